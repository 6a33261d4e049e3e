"""The demo region: the ASEAN member states, their facilities and a COVID-19 essential-supplies catalogue."""
