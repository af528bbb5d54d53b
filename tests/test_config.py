import os

import pytest

from vidbatch import ConfigError, LabelConfig
from vidbatch.core.config import DEFAULT_FPS, DEFAULT_STATE_RESET_S, RayOptions


def make(**kw):
    base = dict(manifest="m.csv", model="b", out="o")
    base.update(kw)
    return LabelConfig(**base)


@pytest.mark.parametrize(
    "field,value",
    [("fps", -1), ("fps", float("nan")), ("window", 0), ("top_k", 0), ("batch_size", 0), ("engine", "spark"),
     ("decode_workers", 0), ("video_timeout", 0), ("chunk_frames", 0), ("clip_stride", 0), ("window", 2.5)],
)
def test_invalid_values_name_the_argument_and_echo_it(field, value):
    with pytest.raises(ConfigError) as info:
        make(**{field: value})
    message = str(info.value)
    assert f"`{field}`" in message and f"Received: {field}=" in message


def test_blank_paths_are_refused():
    with pytest.raises(ConfigError, match="manifest"):
        make(manifest="  ")


def test_config_is_frozen_and_defaults_are_sane():
    config = make()
    with pytest.raises(Exception):
        config.fps = 1  # type: ignore[misc]
    assert config.fps is None and config.window >= 1 and config.workers() >= 1
    # fps is settled once the model is known: the user's, else a clip model's training rate, else the default
    assert config.for_model(None).fps == DEFAULT_FPS and config.for_model(8.0).fps == 8.0
    assert make(fps=1).for_model(8.0).fps == 1.0 and make(fps=0).for_model(8.0).fps == 0.0
    # a streaming model's reset period: the user's, else its bundle's, else the default; it means nothing (and is
    # unset) for other models, since a set period marks a stateful model's run (its video labels weigh by context)
    assert make().for_model(5.0, streaming=True).state_reset_s == DEFAULT_STATE_RESET_S
    assert make().for_model(5.0, streaming=True, state_reset_s=10.0).state_reset_s == 10.0
    assert make(state_reset_s=2).for_model(5.0, streaming=True, state_reset_s=10.0).state_reset_s == 2.0
    assert make(state_reset_s=2).for_model(None).state_reset_s is None and make().for_model(None).state_reset_s is None


def test_record_redacts_credentials():
    config = make(storage_options={"key": "AKIAXXXX", "secret": "s3cr3t", "client_kwargs": {"aws_session_token": "tok"},
                                   "endpoint_url": "http://127.0.0.1:9"})
    record = str(config.to_record())
    assert "AKIAXXXX" not in record and "s3cr3t" not in record and "tok'" not in record
    assert "http://127.0.0.1:9" in record


def test_ray_options_validate():
    with pytest.raises(ConfigError, match="ray.inference_actors"):
        RayOptions(inference_actors=0)
    assert RayOptions(inference_gpus=0.25).inference_gpus == 0.25
    with pytest.raises(ConfigError, match=r"ray.range_items.*Received: ray.range_items=0"):
        RayOptions(range_items=0)
    with pytest.raises(ConfigError, match="ray.committers"):
        RayOptions(committers=1.5)
    assert RayOptions(range_items=200, committers=4).range_items == 200


def test_decoders_take_every_cpu_only_when_inference_does_not_need_one():
    from vidbatch.core.config import default_decode_workers

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert default_decode_workers(inference_on_cpu=False) == cpus
    assert default_decode_workers(inference_on_cpu=True) == max(1, cpus - 1)
    assert make(decode_workers=3).workers(inference_on_cpu=False) == 3 == make(decode_workers=3).workers()
