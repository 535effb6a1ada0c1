"""Entry point for `python app.py` and Hugging Face Spaces."""
from vcstudio.ui import launch

if __name__ == "__main__":
    launch()
