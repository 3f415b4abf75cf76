import pytest

from replicate.config import ConfigError, RunConfig
from replicate import profiles


def test_key_leaves_defaults_out():
    a = RunConfig(model="lenet300-100", dataset="mnist5k", epochs=3)
    b = RunConfig(model="lenet300-100", dataset="mnist5k", epochs=3, weight_decay=0.0, lr=0.01)
    assert a.key == b.key
    assert "weight_decay" not in a.canonical()
    assert RunConfig(dataset="mnist5k", epochs=3, lr=0.02).key != a.key


def test_method_args_equal_to_defaults_do_not_change_the_key():
    parent = RunConfig(dataset="mnist5k", epochs=1)
    a = parent.replace(method="magnitude", parent=parent, args={"compression": 4.0})
    b = parent.replace(method="magnitude", parent=parent, args={"compression": 4.0, "scope": "std"})
    assert a.key == b.key
    assert a.replace(args={"scope": "global"}).key != a.key


def test_int_and_float_hash_alike_and_round_trip():
    a = RunConfig(lr=1, dataset="mnist5k")
    assert a.key == RunConfig(lr=1.0, dataset="mnist5k").key
    p = RunConfig(dataset="mnist5k", epochs=2)
    c = p.replace(method="magnitude", parent=p, args={"compression": 8.0})
    assert RunConfig.from_dict(c.to_dict()).key == c.key


def test_parent_is_part_of_the_key():
    p1, p2 = RunConfig(dataset="mnist5k", epochs=1), RunConfig(dataset="mnist5k", epochs=2)
    c1 = p1.replace(method="magnitude", parent=p1, args={"compression": 4})
    c2 = p2.replace(method="magnitude", parent=p2, args={"compression": 4})
    assert c1.key != c2.key


@pytest.mark.parametrize("kw, message", [
    (dict(dataset="imagenet21k"), "unknown dataset 'imagenet21k'; valid: mnist, fashion_mnist, mnist5k, cifar10, svhn"),
    (dict(model="resnet"), "unknown model 'resnet'; valid: lenet300-100, lenet5-caffe"),
    (dict(method="prune"), "unknown method 'prune'; valid: adaptive_quant, deep_compression, dense, "),
    (dict(profile="fast"), "unknown profile 'fast'; valid: smoke, cpu, paper"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'; valid: sgd, adam"),
    (dict(lr=0.0), "learning rate must be positive"),
    (dict(lr=-0.1), "learning rate must be positive"),
])
def test_bad_parameters_give_one_line_errors(kw, message):
    with pytest.raises(ConfigError) as err:
        RunConfig(**kw).validate()
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("args, message", [
    ({"compression": 0.5}, "compression must be >= 1"),
    ({"sparsity": 1.0}, "sparsity must be in [0, 1)"),
    ({"sparsity": -0.1}, "sparsity must be in [0, 1)"),
    ({}, "exactly one of compression"),
    ({"compression": 4, "sparsity": 0.5}, "exactly one of compression"),
    ({"compression": 4, "schedule": "random"}, "unknown schedule 'random'; valid: iterative, oneshot, gradual"),
    ({"compression": 4, "qualiti": 1}, "unknown argument(s) ['qualiti'] for method 'magnitude'"),
])
def test_bad_pruning_arguments(args, message):
    parent = RunConfig(dataset="mnist5k")
    with pytest.raises(ConfigError) as err:
        parent.replace(method="magnitude", parent=parent, args=args).validate()
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_pruning_needs_a_parent():
    with pytest.raises(ConfigError, match="needs a parent run"):
        RunConfig(method="magnitude", args={"compression": 4}).validate()


def test_environment_profile_wins_and_is_validated(monkeypatch):
    assert profiles.resolve(None) == "cpu"
    assert profiles.resolve("paper") == "paper"
    monkeypatch.setenv("REPLICATE_PROFILE", "smoke")
    assert profiles.resolve("cpu") == "smoke"
    with pytest.raises(ConfigError, match="unknown profile 'fast'; valid: smoke, cpu, paper"):
        profiles.resolve("fast")
    monkeypatch.setenv("REPLICATE_PROFILE", "tiny")
    with pytest.raises(ConfigError, match="valid: smoke, cpu, paper"):
        profiles.resolve(None)


def test_augment_and_normalize_are_validated_and_default_keys_unchanged():
    base = RunConfig()
    assert RunConfig(augment="none").key == base.key and RunConfig(normalize=False).key == base.key
    assert RunConfig(augment="crop-flip").key != base.key
    with pytest.raises(ConfigError, match="unknown augment 'cutout'; valid: none, crop-flip"):
        RunConfig(augment="cutout").validate()
    with pytest.raises(ConfigError, match="unknown normalize 'pixel'"):
        RunConfig(normalize="pixel").validate()
    RunConfig(normalize="channel").validate()


def test_val_size_is_checked_and_must_match_the_parent():
    with pytest.raises(ConfigError, match="val_size"):
        RunConfig(val_size=0).validate()
    with pytest.raises(ConfigError, match="same split"):
        RunConfig(method="magnitude", parent=RunConfig()).replace(val_size=100).validate()
    assert RunConfig(val_size=None).key == RunConfig().key


@pytest.mark.parametrize("method", ["magnitude", "dst", "sensitivity", "adaptive_quant", "uniform_quant", "deep_compression"])
def test_a_run_must_use_its_parents_model(method):
    parent = RunConfig(method="dense", model="lenet5-caffe")
    with pytest.raises(ConfigError, match="same model as its parent"):
        RunConfig(method=method, model="lenet300-100", parent=parent,
                  args={"compression": 4} if method == "magnitude" else {}).validate()
    RunConfig(method=method, model="lenet5-caffe", parent=parent,
              args={"compression": 4} if method == "magnitude" else {}).validate()
