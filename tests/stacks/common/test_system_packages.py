from stacks.common import system_packages


def test_missing_reports_absent_and_installed_packages() -> None:
    # dpkg itself is always installed on Debian; the second name cannot exist.
    assert system_packages.missing(["dpkg", "pier-no-such-package"]) == ["pier-no-such-package"]


def test_every_area_lists_valid_package_names() -> None:
    for area, names in system_packages.PACKAGES.items():
        for name in names:
            assert name and name == name.strip() and " " not in name, (area, name)
