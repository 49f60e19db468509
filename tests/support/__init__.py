"""Test support: real servers started as processes on free ports, stopped by their own process ids."""
