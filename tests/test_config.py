import pytest

from gemfactory.config import load_recipe, recipe_from_dict
from gemfactory.errors import ConfigError


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_tiny_recipe_loads_with_types(tmp_path):
    r = load_recipe("recipes/tiny-gem.yaml")
    assert r.model.llm.name == "vicuna" and r.model.ecg.name == "resnet1d"
    assert r.stages[0].name == "finetune" and isinstance(r.stages[0].lr, float)
    assert r.model.connectors["ecg"].name == "mlp2x_gelu"


def test_unknown_key_names_file_and_path(tmp_path):
    p = write(tmp_path, "r.yaml", "model:\n  llm:\n    nmae: vicuna\n")
    with pytest.raises(ConfigError) as err:
        load_recipe(p)
    msg = str(err.value)
    assert str(p) in msg and "model.llm.nmae: unknown key (did you mean 'name'?)" in msg


def test_wrong_type_names_key_and_expected_type(tmp_path):
    p = write(tmp_path, "r.yaml", "stages:\n  - name: a\n    batch_size: lots\n")
    with pytest.raises(ConfigError, match=r"stages\.a\.batch_size: expected int, got str 'lots'"):
        load_recipe(p)  # a stage is named as overrides name it
    p = write(tmp_path, "r2.yaml", "stages:\n  - batch_size: 1\n  - [not, a, stage]\n")
    with pytest.raises(ConfigError, match=r"stages\[1\]: expected a mapping, got list"):
        load_recipe(p)  # an item that is no stage mapping keeps its index


def test_literal_value_checked(tmp_path):
    p = write(tmp_path, "r.yaml", "model:\n  layout: gme\n")
    with pytest.raises(ConfigError, match=r"model.layout: 'gme' is not one of \['separate', 'gem'\] \(did you mean 'gem'\?\)"):
        load_recipe(p)


def test_malformed_yaml_gives_line(tmp_path):
    p = write(tmp_path, "r.yaml", "model:\n  llm: [unclosed\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: malformed YAML"):
        load_recipe(p)


def test_missing_and_empty_recipe(tmp_path):
    with pytest.raises(ConfigError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="the recipe is empty"):
        load_recipe(write(tmp_path, "e.yaml", ""))


def test_dotted_overrides_reach_sections_and_named_stages(tmp_path):
    p = write(tmp_path, "r.yaml", "stages:\n  - name: pretrain\n    lr: 1.0e-3\n  - name: finetune\n    epochs: 1\n")
    r = load_recipe(p, ["training.seed=7", "stages.finetune.epochs=2", "stages.pretrain.lr=1e-4",
                        "model.llm.arch.hidden_size=48"])
    assert r.training.seed == 7
    assert r.stage("finetune").epochs == 2.0
    assert r.stage("pretrain").lr == pytest.approx(1e-4)
    assert r.model.llm.arch == {"hidden_size": 48}


def test_override_errors(tmp_path):
    p = write(tmp_path, "r.yaml", "stages:\n  - name: finetune\n")
    with pytest.raises(ConfigError, match="no stage named 'nope'"):
        load_recipe(p, ["stages.nope.epochs=1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_recipe(p, ["training.seed"])
    with pytest.raises(ConfigError, match="training.sed: unknown key"):
        load_recipe(p, ["training.sed=1"])


def test_base_inheritance_merges_and_stages_merge_by_name(tmp_path):
    write(tmp_path, "base.yaml", "training:\n  seed: 3\n  output_dir: runs/x\nstages:\n  - name: finetune\n    lr: 0.5\n    epochs: 4\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\ntraining:\n  seed: 5\nstages:\n  - name: finetune\n    epochs: 1\n")
    r = load_recipe(child)
    assert r.training.seed == 5 and r.training.output_dir == "runs/x"
    assert r.stage("finetune").lr == 0.5 and r.stage("finetune").epochs == 1


def test_base_component_renamed_in_child_is_replaced_not_merged(tmp_path):
    write(tmp_path, "base.yaml", "model:\n  ecg: {name: vit1d, arch: {width: 64, heads: 4}, signal: {fs: 100}}\n"
                                 "  connectors:\n    ecg: {name: linear, via: image}\n")
    child = write(tmp_path, "child.yaml", "base: base.yaml\nmodel:\n  ecg: {name: resnet1d, arch: {tiny: true}}\n"
                                          "  connectors:\n    ecg: {via: null}\n")
    r = load_recipe(child)
    assert (r.model.ecg.name, r.model.ecg.arch, r.model.ecg.signal) == ("resnet1d", {"tiny": True}, {})
    assert (r.model.connectors["ecg"].name, r.model.connectors["ecg"].via) == ("linear", None)  # same name: merged


def test_base_loop_is_an_error(tmp_path):
    write(tmp_path, "a.yaml", "base: b.yaml\n")
    write(tmp_path, "b.yaml", "base: a.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_recipe(tmp_path / "a.yaml")


def test_semantic_checks():
    with pytest.raises(ConfigError, match=r"stages\.s\.tune\.llm: unknown tune type 'ful'; did you mean 'full'\?"):
        recipe_from_dict({"stages": [{"name": "s", "tune": {"llm": "ful"}}]})
    with pytest.raises(ConfigError, match="model.connectors.ecg: required"):
        recipe_from_dict({"model": {"ecg": {"name": "vit1d"}}})
    with pytest.raises(ConfigError, match="duplicate stage names"):
        recipe_from_dict({"stages": [{"name": "a"}, {"name": "a"}]})


def test_typed_stage_sections_carry_help_and_checks_beside_the_fields(tmp_path):
    from gemfactory.config import LoraConfig, PartialConfig, TuneConfig, field_help

    r = load_recipe(write(tmp_path, "r.yaml", "stages:\n  - name: a\n    tune: {llm: lora, vision: partial}\n"
                                              "    lora: {r: 4, target_modules: [q_proj]}\n"
                                              "    partial: {vision: {last_n_layers: 1}}\n"))
    stage = r.stage("a")
    assert isinstance(stage.tune, TuneConfig) and stage.tune.given() == {"llm": "lora", "vision": "partial"}
    assert isinstance(stage.lora, LoraConfig) and stage.lora.target_modules == {"llm": ["q_proj"]}  # list = llm's
    assert stage.partial == {"vision": PartialConfig(last_n_layers=1)}
    assert all(field_help(cls).values() for cls in (TuneConfig, LoraConfig, PartialConfig))
    for text, message in [
        ("tune: {lm: full}", "stages.a.tune.lm: unknown key (did you mean 'llm'?)"),
        ("lora: {r: 0}", "stages.a.lora.r: expected an integer >= 1, got 0"),
        ("lora: {target_modules: {llm: []}}", "stages.a.lora.target_modules: expected a non-empty list"),
        ("tune: {llm: partial}\n    partial: {llm: {}}",
         "stages.a.partial.llm: name what to train: last_n_layers and/or modules"),
    ]:
        with pytest.raises(ConfigError) as err:
            load_recipe(write(tmp_path, "bad.yaml", f"stages:\n  - name: a\n    {text}\n"))
        assert message in str(err.value), str(err.value)


def test_stage_config_made_in_code_gets_the_same_typed_sections():
    from gemfactory.config import LoraConfig, StageConfig

    s = StageConfig(name="s", tune={"llm": "lora"}, lora={"r": 2, "target_modules": {"llm": ["v_proj"]}})
    assert s.tune.get("llm") == "lora" and "vision" not in s.tune and s.lora == LoraConfig(
        r=2, target_modules={"llm": ["v_proj"]})
    assert [k for k, _ in StageConfig(name="s", tune={"llm": "half"}).problems()] == ["tune.llm"]
