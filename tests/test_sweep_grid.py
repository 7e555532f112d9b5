"""The sweep grid: ``ARCH:KEY=V1,V2`` specs, their cartesian product, seeds and setting names."""

import pytest

from spade_lens.errors import SpadeLensError
from spade_lens.sweep import SweepSetting, expand_grid, grids_from_mapping, parse_arch_spec, parse_seeds


def test_spec_is_the_cartesian_product_with_sorted_keys():
    grid = parse_arch_spec("spade:lambda_init=0.001,0.01:kds_coefficient=0.1,1")
    assert grid.arch == "spade"
    assert grid.settings == (
        (("kds_coefficient", 0.1), ("lambda_init", 0.001)),
        (("kds_coefficient", 0.1), ("lambda_init", 0.01)),
        (("kds_coefficient", 1), ("lambda_init", 0.001)),
        (("kds_coefficient", 1), ("lambda_init", 0.01)),
    )
    assert parse_arch_spec("relu").settings == ((),)
    assert parse_arch_spec("topk:k=1,4").settings == ((("k", 1),), (("k", 4),))


def test_expand_grid_names_settings_and_seeds():
    settings = expand_grid([parse_arch_spec("topk:k=1,4"), parse_arch_spec("spade:lr_scale=3")], [0, 2])
    assert [s.name for s in settings] == ["topk_k-1_seed0", "topk_k-1_seed2", "topk_k-4_seed0", "topk_k-4_seed2",
                                          "spade_lr_scale-3_seed0", "spade_lr_scale-3_seed2"]
    spade = settings[-1]
    assert spade.sae_kwargs() == {} and spade.train_value("lr_scale", 1.0) == 3
    assert spade.label == "spade lr_scale=3" and spade.point == ("spade", (("lr_scale", 3),))
    assert SweepSetting("topk", (("k", 4),), 0).point == settings[2].point


def test_grids_from_mapping_equal_the_cli_form():
    assert grids_from_mapping({"topk": {"k": [1, 4]}, "relu": {}}) == [parse_arch_spec("topk:k=1,4"),
                                                                       parse_arch_spec("relu")]


@pytest.mark.parametrize("spec, message", [
    ("spades:k=1", "unknown SAE architecture 'spades'"),
    ("topk:kk=1", r"\['kk'\] in 'topk:kk=1' are not settings of 'topk'"),
    ("topk:k", "expected ARCH\\[:KEY=V1,V2,...\\]"),
    ("topk:k=", "expected ARCH\\[:KEY=V1,V2,...\\]"),
    ("topk:k=1:k=2", "key 'k' appears twice"),
    ("topk:k=1,1", "repeats a value"),
    ("spade:kds_coefficient=inf", "not finite"),
])
def test_bad_specs_are_clear_errors(spec, message):
    with pytest.raises(SpadeLensError, match=message):
        parse_arch_spec(spec)


def test_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    with pytest.raises(SpadeLensError, match="--seeds: received 'a'"):
        parse_seeds("a")
    with pytest.raises(SpadeLensError, match="expected distinct seeds"):
        expand_grid([parse_arch_spec("relu")], [0, 0])
    with pytest.raises(SpadeLensError, match="expected one or more integers >= 0"):
        expand_grid([parse_arch_spec("relu")], [])
    with pytest.raises(SpadeLensError, match="expected at least one --arch"):
        expand_grid([], [0])
