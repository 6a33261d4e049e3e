"""Needs: requests for supplies from facilities and members, endorsed nationally, met regionally."""
