"""Switchboard: an AI serving mesh."""
