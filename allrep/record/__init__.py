"""The record: runs, places, the ledger, the pre-registration, the seal and its replay."""
