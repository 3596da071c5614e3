"""`uvd view`: a local web app over a build (see uvd/cli/view_cmd.py)."""
