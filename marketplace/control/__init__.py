"""Driving a node from a test: market time, operator methods on workers and rules, faults.

``marketplace.control`` is what ``serve --control`` turns on (control.md): ``advance`` moves
market time, ``workers`` reaches connected miners, ``faults`` injects misbehaviour, and
``Control`` bundles them for the API's ``admin.*`` methods (``marketplace.api.admin``).
"""
