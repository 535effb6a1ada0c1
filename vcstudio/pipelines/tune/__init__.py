"""One-shot tuning of the inflated SD model on one clip (Tune-A-Video): the loop, its validation
samples and the speed probe."""
