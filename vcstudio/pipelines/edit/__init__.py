"""Editing a tuned SD clip: the video model rebuilt, the run's delta read onto its base, the DDIM
loop and inversion, structure control, VideoEditPipeline and the edit itself. The lowest pipelines
package: tune, long and flow build on it."""
