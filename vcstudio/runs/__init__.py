"""Run folders, beside the run store: what a tune leaves behind and how it is opened again.

folder.py (the folder's files, written and read), open.py (opening: file reading only),
source.py (a local folder or an hf:// reference), tav_folder.py (a Tune-A-Video output folder's
config and its converted run), convert.py (converting a Tune-A-Video folder: loads its base
model; the explicit step a job takes when it starts, never an estimate or argument parsing)."""
