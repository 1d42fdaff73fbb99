import difflib
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from stacks.nodes import stack_config
from stacks.nodes.stack_config import StackConfigError, add_run_node, node_names, plan_run_node
from tests.stacks.nodes.sample import STAGING, write_stack


def _changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_add_without_name_only_bumps_count_and_keeps_everything_else(tmp_path: Path) -> None:
    path = write_stack(tmp_path)
    change = add_run_node("staging", None, tmp_path)
    assert (change.name, change.count_before, change.count_after) == ("staging-run-3", 2, 3)
    # The comment on the edited line keeps its column; nothing else moves.
    assert _changed_lines(STAGING, path.read_text()) == [
        "-      count: 2   # grows with invoke add-run-node",
        "+      count: 3   # grows with invoke add-run-node",
    ]
    assert node_names("staging", tmp_path)["run"] == [
        "staging-run-1",
        "staging-run-2",
        "staging-run-3",
    ]


def test_name_materialises_default_names_after_count(tmp_path: Path) -> None:
    path = write_stack(tmp_path)
    change = add_run_node("staging", "edge-a", tmp_path)
    assert change.materialised_names
    assert _changed_lines(STAGING, path.read_text()) == [
        "-      count: 2   # grows with invoke add-run-node",
        "+      count: 3   # grows with invoke add-run-node",
        "+      names:",
        "+        - staging-run-1",
        "+        - staging-run-2",
        "+        - edge-a",
    ]
    run = YAML(typ="safe").load(path.read_text())["config"]["pier-infra:pools"]["run"]
    assert list(run) == ["count", "names", "server_type", "locations", "ip_range", "labels"]
    # Later nodes extend the list; default names keep their index-based form.
    add_run_node("staging", None, tmp_path)
    assert node_names("staging", tmp_path)["run"] == [
        "staging-run-1",
        "staging-run-2",
        "edge-a",
        "staging-run-4",
    ]


def test_existing_ok_makes_the_edit_idempotent(tmp_path: Path) -> None:
    path = write_stack(tmp_path)
    add_run_node("staging", "edge-a", tmp_path)
    once = path.read_text()
    again = add_run_node("staging", "edge-a", tmp_path, existing_ok=True)
    assert not again.changed
    assert path.read_text() == once


def test_plan_touches_nothing(tmp_path: Path) -> None:
    path = write_stack(tmp_path)
    change = plan_run_node("staging", "edge-a", tmp_path)
    assert (change.name, change.count_after, change.materialised_names) == ("edge-a", 3, True)
    assert path.read_text() == STAGING


@pytest.mark.parametrize(
    ("env", "name", "message"),
    [
        (
            "nope",
            None,
            "unknown env 'nope': there is no .*Pulumi.nope.yaml \\(known envs: staging\\)",
        ),
        ("Bad_Env", None, "--env 'Bad_Env' is not a valid environment name"),
        ("staging", "Edge_A", "--name 'Edge_A' is not a valid DNS label"),
        ("staging", "-edge", "--name '-edge' is not a valid DNS label"),
        ("staging", "a" * 64, "is not a valid DNS label"),
        ("staging", "staging-run-2", "--name 'staging-run-2' is already a node of env 'staging'"),
        ("staging", "staging-ctrl-1", "--name 'staging-ctrl-1' is already a node"),
        # Caught by the infra stack's own validation of the edited config.
        ("staging", "staging-dns", "duplicate node name 'staging-dns'"),
    ],
)
def test_bad_input_is_one_message_and_leaves_the_file(
    tmp_path: Path, env: str, name: str | None, message: str
) -> None:
    path = write_stack(tmp_path)
    with pytest.raises(StackConfigError, match=message) as info:
        add_run_node(env, name, tmp_path)
    assert "\n" not in str(info.value)
    assert path.read_text() == STAGING
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Pulumi.staging.yaml"]


def test_full_ip_range_is_refused_before_writing(tmp_path: Path) -> None:
    text = STAGING.replace("ip_range: 10.0.4.0/24", "ip_range: 10.0.4.0/30")
    path = write_stack(tmp_path, text=text)
    with pytest.raises(StackConfigError, match="do not fit ip_range 10.0.4.0/30"):
        add_run_node("staging", None, tmp_path)
    assert path.read_text() == text


def test_broken_names_list_is_named(tmp_path: Path) -> None:
    text = STAGING.replace("count: 2   #", "count: 2\n      names: [only-one]  #")
    write_stack(tmp_path, text=text)
    with pytest.raises(
        StackConfigError, match=r"run.names: must be a list of exactly `count` \(2\)"
    ):
        add_run_node("staging", None, tmp_path)


@pytest.mark.parametrize(
    ("text", "indent", "offset"),
    [
        ("a:\n  b:\n  - x\n", 2, 0),
        ("a:\n    b:\n      - x\n", 4, 2),
        ("a:\n  b: 1\n", 2, 2),
        (STAGING, 2, 2),
    ],
)
def test_indent_guess(text: str, indent: int, offset: int) -> None:
    assert stack_config._guess_indent(text) == (indent, offset)


def test_default_name_taken_asks_for_a_name(tmp_path: Path) -> None:
    text = STAGING.replace("count: 2   #", "count: 2\n      names: [staging-run-3, b]  #")
    path = write_stack(tmp_path, text=text)
    with pytest.raises(StackConfigError, match="'staging-run-3' .* already used: pass --name"):
        add_run_node("staging", None, tmp_path)
    assert path.read_text() == text


def test_invalid_yaml_is_named(tmp_path: Path) -> None:
    path = write_stack(tmp_path, text="config:\n  a: [1,\n")
    with pytest.raises(StackConfigError, match="not valid YAML"):
        add_run_node("staging", None, tmp_path)
    assert path.read_text() == "config:\n  a: [1,\n"


def test_config_without_pools_is_named(tmp_path: Path) -> None:
    write_stack(tmp_path, text="config:\n  pier-infra:env: staging\n")
    with pytest.raises(StackConfigError, match="expected exactly one `config.<project>:pools`"):
        add_run_node("staging", None, tmp_path)


@pytest.mark.parametrize(
    "stack_file",
    sorted(stack_config.INFRA_DIR.glob("Pulumi.*.yaml")),
    ids=lambda p: p.name,
)
@pytest.mark.parametrize("name", [None, "edge-x"])
def test_real_stack_files_change_only_the_run_pool(
    tmp_path: Path, stack_file: Path, name: str | None
) -> None:
    env = stack_file.name.split(".")[1]
    copy = tmp_path / stack_file.name
    before = stack_file.read_text()
    copy.write_text(before)
    change = add_run_node(env, name, tmp_path)
    after = copy.read_text()
    changed = _changed_lines(before, after)
    removed = [line for line in changed if line.startswith("-")]
    added = [line for line in changed if line.startswith("+")]
    assert len(removed) == 1 and removed[0].lstrip("- ").startswith("count:")
    assert added[0] == removed[0].replace(
        f"count: {change.count_before}", f"count: {change.count_after}", 1
    ).replace("-", "+", 1)
    if change.materialised_names:
        assert added[1].endswith("names:")
    if len(added) > 1:
        assert added[-1].endswith(f"- {change.name}")
    else:
        assert name is None
    # The infra stack still reads the edited file, with one more run node.
    from stacks.infra.config import load_file

    cfg = load_file(copy)
    assert cfg.pools.run.count == change.count_after
    assert cfg.pools.run.node_names(env, "run")[-1] == change.name


def test_concurrent_adds_each_get_a_node(tmp_path: Path) -> None:
    # Separate processes, as two operators would be: neither edit may overwrite the other.
    write_stack(tmp_path)
    code = (
        "import sys; from pathlib import Path; from stacks.nodes.stack_config import add_run_node;"
        "add_run_node('staging', sys.argv[1], Path(sys.argv[2]))"
    )
    root = Path(__file__).resolve().parents[3]
    procs = [
        subprocess.Popen([sys.executable, "-c", code, f"edge-{i}", str(tmp_path)], cwd=root)
        for i in range(4)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    names = node_names("staging", tmp_path)["run"]
    assert names[:2] == ["staging-run-1", "staging-run-2"]
    assert sorted(names[2:]) == ["edge-0", "edge-1", "edge-2", "edge-3"]


def test_name_equal_to_the_default_does_not_list_names(tmp_path: Path) -> None:
    path = write_stack(tmp_path)
    change = add_run_node("staging", "staging-run-3", tmp_path)
    assert (change.name, change.materialised_names) == ("staging-run-3", False)
    assert path.read_text() == STAGING.replace("count: 2   #", "count: 3   #")
