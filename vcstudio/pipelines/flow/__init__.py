"""Flow-matching video DiTs (Wan2.1 T2V): the ODE (sampling, inversion, FlowEdit), the clip, the
LoRA tune into a run folder, edits and long video."""
