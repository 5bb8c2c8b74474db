"""Projections: pure folds of the event log into users, polls, tallies and ballots."""
