"""Runs over time: every saved run as one table (:mod:`.table`), its changes (:mod:`.changes`), a dashboard (:mod:`.dashboard`)."""
