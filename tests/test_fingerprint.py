"""The base fingerprint names the weights, not the precision they were loaded in: a run tuned
on a GPU (bf16 frozen weights) must edit on a CPU (fp32), and runs recorded under the earlier
full-precision formula must still load."""
import torch

from vcstudio.models.loading import ModelCache, _fingerprint, load_base


def test_same_base_same_fingerprint_in_fp32_and_bf16(tiny_sd):
    fp32 = load_base(str(tiny_sd), dtype=torch.float32, cache=ModelCache())
    bf16 = load_base(str(tiny_sd), dtype=torch.bfloat16, cache=ModelCache())
    assert fp32.fingerprint == bf16.fingerprint
    # the earlier formula told them apart: that is the bug this guards
    assert fp32.legacy_fingerprints != bf16.legacy_fingerprints
    assert fp32.matches(fp32.legacy_fingerprints[0])


def test_other_weights_other_fingerprint(tiny_sd):
    base = load_base(str(tiny_sd), cache=ModelCache())
    before = base.fingerprint
    with torch.no_grad():
        base.unet.conv_in.weight.add_(0.01)
    after = _fingerprint(base.model_id, base.unet, base.vae, base.text_encoder)
    assert after != before and not base.matches(after)
    assert not base.matches(None)


def test_a_base_loaded_in_fp16_matches_the_same_weights_in_fp32_by_signature(tiny_sd, tiny_sd_v):
    """fp16 rounding hashes differently (a Tune-A-Video config's mixed_precision fp16 loads
    the base in fp16), so a run records its base's signature too: the same weights match in
    any precision, other weights do not."""
    fp32 = load_base(str(tiny_sd), dtype=torch.float32, cache=ModelCache())
    fp16 = load_base(str(tiny_sd), dtype=torch.float16, cache=ModelCache())
    other = load_base(str(tiny_sd_v), dtype=torch.float32, cache=ModelCache())
    assert fp16.fingerprint != fp32.fingerprint  # the hash alone told them apart
    assert fp32.matches(fp16.fingerprint, fp16.signature)
    assert fp16.matches(fp32.fingerprint, fp32.signature)
    assert not other.matches(fp32.fingerprint, fp32.signature)
    assert not fp32.matches(fp16.fingerprint)  # without a signature: the hash decides
