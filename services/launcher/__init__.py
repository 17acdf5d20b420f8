"""Starts and stops the processes of one Switchboard stack."""
