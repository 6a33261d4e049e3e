"""Supply: lots, stock events and the balances derived from them, pledges, indicators."""
