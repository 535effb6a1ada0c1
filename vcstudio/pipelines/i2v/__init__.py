"""Image-to-video: one backbone interface (SVD, LTX-Video, Wan2.1 I2V), VCD reward tuning,
base-vs-tuned evaluation."""
