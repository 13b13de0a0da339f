import pytest

from hydra.data.naming import (
    NamingError,
    ParsedName,
    check_label_name,
    check_plot_type_name,
    make_name,
    parse_name,
)


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


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("fcal-100000000000000000000000.png", "run number 100000000000000000000000 is out of range"),
        ("fcal-2147483648.png", "out of range"),
        ("fcal-12_99999999999.png", "chunk number 99999999999 is out of range"),
        ("fcal-" + "9" * 5000 + ".png", "5000 digits"),
    ],
)
def test_run_and_chunk_out_of_range(name, why):
    with pytest.raises(NamingError, match=why):
        parse_name(name)
    assert parse_name("fcal-2147483647_2147483647.png") == ParsedName("fcal", 2**31 - 1, 2**31 - 1)


@pytest.mark.parametrize(
    "bad", ["../../x", "a/b", "", "x" * 129, "fcal occ", "fcal-occ", ".hidden", "é", None, 3]
)
def test_plot_type_names_follow_one_rule(bad):
    with pytest.raises(NamingError, match="plot type name .* is not valid"):
        check_plot_type_name(bad)
    assert check_plot_type_name("FCAL_occupancy_2") == "FCAL_occupancy_2"


def test_custom_pattern_cannot_smuggle_a_bad_plot_type_or_run():
    loose = r"^(?P<plot_type>.+)-(?P<run>\w+)\.png$"
    with pytest.raises(NamingError, match="plot type name '..%2f..' is not valid"):
        parse_name("..%2f..-12.png", loose)
    with pytest.raises(NamingError, match="run number '12a' is not a number"):
        parse_name("fcal-12a.png", loose)
    with pytest.raises(NamingError, match="run number '١٢' is not a number"):
        parse_name("fcal-١٢.png", loose)


@pytest.mark.parametrize("bad", ["", " Good", "Good ", "Go;od", "B" * 65, "../x", "a/b", None])
def test_label_names_follow_one_rule(bad):
    with pytest.raises(NamingError, match="label name .* is not valid"):
        check_label_name(bad)
    for good in ("Good", "NoData", "Hot channel", "Bad+", "low-stat", "v1.2"):
        assert check_label_name(good) == good
