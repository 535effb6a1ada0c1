"""Entry point for `python app.py` and Hugging Face Spaces."""
from vcstudio import zerogpu
from vcstudio.ui import launch

if zerogpu.active():  # ZeroGPU looks for its @spaces.GPU functions when the app starts
    zerogpu.register()

if __name__ == "__main__":
    launch()
