"""Runs guided by real photos: feature accentuation and feature inversion."""
