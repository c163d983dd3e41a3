"""The runtime matrix: every bundle proven by its own consumer code on the runtime it will run on.

cells.py declares each cell (one `Runtime(...)` each) and runs a bundle's checker in it; envs.py builds the
cells' environments from the registries; browser.py drives Chromium for the web page; remote.py and worker.py
time candidates inside another cell's environment.
"""
