import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cluster_yaml_passes_rays_own_schema():
    from ray.autoscaler._private.util import validate_config

    with open(os.path.join(ROOT, "cluster.yaml")) as handle:
        config = yaml.safe_load(handle)
    validate_config(config)  # raises jsonschema.ValidationError on any problem
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert any("GPU" in t["node_config"]["InstanceType"] or t["node_config"]["InstanceType"].startswith(("g", "p"))
               for name, t in types.items() if name != config["head_node_type"])
    assert any("pip install -e '/home/ubuntu/vidbatch[ray,keyframes]'" in c for c in config["setup_commands"])  # the Ray extra, and PyAV for --sampling keyframes on the workers
    assert config["file_mounts"] == {"/home/ubuntu/vidbatch": "."}


def test_schema_check_is_real():
    import jsonschema
    import pytest
    from ray.autoscaler._private.util import validate_config

    with open(os.path.join(ROOT, "cluster.yaml")) as handle:
        config = yaml.safe_load(handle)
    config["available_node_types"]["head"]["not_a_field"] = 1
    with pytest.raises(jsonschema.ValidationError):
        validate_config(config)
