import pytest

from hydra.data.naming import NamingError, ParsedName, make_name, parse_name


def test_default_convention():
    assert parse_name("fcal_occupancy-041230_0003.png") == ParsedName("fcal_occupancy", 41230, 3)
    assert parse_name("/a/b/cdc-000001.jpeg") == ParsedName("cdc", 1, None)
    assert parse_name(make_name("tof_energy", 42, 7)) == ParsedName("tof_energy", 42, 7)


@pytest.mark.parametrize("name", ["fcal.png", "fcal-12.gif", "fc al-1.png", "fcal-x1.png", "", "labels.csv"])
def test_names_that_do_not_match(name):
    with pytest.raises(NamingError, match="naming convention"):
        parse_name(name)


def test_custom_pattern():
    pattern = r"^run(?P<run>\d+)_(?P<plot_type>\w+?)(?:_c(?P<chunk>\d+))?\.png$"
    assert parse_name("run12_bcal_c3.png", pattern) == ParsedName("bcal", 12, 3)
    with pytest.raises(NamingError):
        parse_name("bcal-12.png", pattern)
