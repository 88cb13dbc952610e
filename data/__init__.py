"""The dataset's local home; synthetic.py makes a stand-in for smoke runs and tests."""
