"""Long Video: co-denoised windows, masks and average fusion, combined tuning, progressive
refinement."""
