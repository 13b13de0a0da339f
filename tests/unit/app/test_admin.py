"""AppTest of the Admin page: admins only; plot type settings, masks, users, permissions, models."""

from __future__ import annotations

import pytest

from hydra.auth import can, get_user
from hydra.db import session_scope
from hydra.db.models import Model, PlotType
from hydra.db.queries import active_model, get_plot_type
from tests.helpers.apptest import open_page

pytestmark = pytest.mark.timeout(120)


def _open(user_id: int | None, **state):
    return open_page("views/admin.py", user_id, **state)


def test_admin_page_is_for_admins_only(seeded):
    _, seed = seeded
    at = _open(seed.users["expert"])
    assert not at.exception
    assert any("may not admin" in w.value for w in at.warning)
    assert not at.tabs


def test_admin_changes_plot_type_users_and_permissions(seeded):
    engine, seed = seeded
    at = _open(seed.users["admin"], adm_plot_type="FCAL_occupancy")
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.tabs) == 4
    at.number_input(key=f"adm_collect_{seed.plot_types['FCAL_occupancy']}").set_value(12.5)
    at.checkbox(key=f"adm_hidden_{seed.plot_types['FCAL_occupancy']}").check()
    next(b for b in at.button if b.label == "Save plot type").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Saved FCAL_occupancy" in m.value for m in at.success)

    at.text_input(key="adm_user_name").set_value("newbie")
    at.text_input(key="adm_user_password").set_value("pw")
    at.selectbox(key="adm_user_role").set_value("expert")  # thresholds need the expert role
    next(b for b in at.button if b.label == "Add user").click().run()
    at.selectbox(key="adm_perm_user").set_value("newbie")
    at.selectbox(key="adm_perm_plot_type").set_value("CDC_hits")
    at.checkbox(key="adm_perm_thresholds").check()
    next(b for b in at.button if b.label == "Grant").click().run()
    assert not at.exception, [e.value for e in at.exception]

    at.text_input(key="adm_new_pt_name").set_value("bad name!")
    next(b for b in at.button if b.label == "Create plot type").click().run()
    assert any("letters, digits" in e.value for e in at.error)

    with session_scope(engine) as s:
        pt = get_plot_type("FCAL_occupancy", session=s)
        assert (pt.collect_percent, pt.hidden) == (12.5, True)
        newbie = get_user("newbie", session=s)
        cdc = get_plot_type("CDC_hits", session=s).id
        assert can(newbie, "thresholds", cdc, session=s) and can(newbie, "label", cdc, session=s)


def test_mask_preview_and_active_model(seeded):
    engine, seed = seeded
    with session_scope(engine) as s:
        pt = s.get(PlotType, seed.plot_types["CDC_pedestal"])
        pt.mask = [[0.1, 0.1, 0.4, 0.5]]
        s.add(pt)
    at = _open(seed.users["admin"], adm_plot_type="CDC_pedestal")
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("image")) == 1  # the mask drawn on the newest CDC_pedestal image
    pt_id = seed.plot_types["FCAL_timing"]
    with session_scope(engine) as s:
        spare = Model(plot_type_id=pt_id, head="classifier", path="/m/spare", input_height=8, input_width=8)
        s.add(spare)
        s.flush()
        spare_id = spare.id
    at.run()
    assert at.button(key=f"adm_activate_{pt_id}").disabled  # the active one is chosen
    chooser = at.selectbox(key=f"adm_model_{pt_id}")
    chooser.set_value(next(o for o in chooser.options if f"model {spare_id} " in o)).run()
    at.button(key=f"adm_activate_{pt_id}").click().run()
    assert not at.exception, [e.value for e in at.exception]
    with session_scope(engine) as s:
        assert active_model(pt_id, session=s).id == spare_id


def test_rename_merge_hide_and_delete_keep_everything_consistent(seeded):
    """A plot type a misnamed file created is merged into the right one; nothing is lost or dangling."""
    from sqlmodel import func, select

    from hydra.db.models import Image, ImageLabel, Inference, Label, Permission
    from hydra.db.queries import labels_of
    from hydra.services import admin

    engine, seed = seeded
    fcal = seed.plot_types["FCAL_occupancy"]
    with session_scope(engine) as s:
        root = get_user("admin", session=s)
        wrong = admin.add_plot_type(root, "FCAL_Occupancy", ["Good", "Bad", "Odd"], session=s)
        odd = next(lb for lb in labels_of(wrong.id, session=s) if lb.name == "Odd")
        bad = next(lb for lb in labels_of(wrong.id, session=s) if lb.name == "Bad")
        moved_ids = []
        for i, label in enumerate((bad, odd, None)):
            img = Image(path=f"/kept/w{i}.png", filename=f"FCAL_Occupancy-000001_{i}.png", plot_type_id=wrong.id,
                        run=1, content_hash=f"w{i}", label_id=label.id if label else None)  # fmt: skip
            s.add(img)
            s.flush()
            moved_ids.append(img.id)
            if label:
                s.add(ImageLabel(image_id=img.id, label_id=label.id, user_id=root.id))
        s.add(Inference(source_key="w" * 64, path="/x.png", filename="x.png", plot_type_id=wrong.id,
                        model_id=seed.models["FCAL_occupancy"], label="Bad"))  # fmt: skip
        s.add(Permission(user_id=seed.users["labeler"], plot_type_id=wrong.id, can_label=True))
        wrong_id = wrong.id
        before = s.exec(select(func.count()).select_from(Image).where(Image.plot_type_id == fcal)).one()
        ann = get_user("expert", session=s)
        with pytest.raises(admin.PermissionDenied):
            admin.merge_plot_types(ann, wrong_id, fcal, session=s)
        with pytest.raises(ValueError, match="exists already"):
            admin.rename_plot_type(root, wrong_id, "fcal_OCCUPANCY", session=s)
        with pytest.raises(ValueError, match="merge it into another"):
            admin.delete_plot_type(root, wrong_id, session=s)
        with pytest.raises(
            LookupError, match="did you mean 'FCAL_Occupancy', 'FCAL_occupancy'|did you mean 'FC"
        ):
            admin.rename_plot_type(root, "fcal_occupancy", "x", session=s)
    with session_scope(engine) as s:
        moved = admin.merge_plot_types(admin.OPERATOR, "FCAL_Occupancy", "FCAL_occupancy", session=s)
        assert (moved.images, moved.labeled, moved.inferences) == (3, 2, 1)
    with session_scope(engine) as s:
        assert s.get(PlotType, wrong_id) is None
        assert not s.exec(select(Label).where(Label.plot_type_id == wrong_id)).all()
        names = {lb.id: lb.name for lb in labels_of(fcal, session=s)}
        assert "Odd" in names.values()  # the label the target lacked came along
        images = s.exec(select(Image).where(col_in_ids(Image.id, moved_ids))).all()
        assert {i.plot_type_id for i in images} == {fcal}
        assert sorted(names.get(i.label_id, "-") for i in images) == ["-", "Bad", "Odd"]
        history = s.exec(
            select(ImageLabel).where(col_in_ids(ImageLabel.image_id, [i.id for i in images]))
        ).all()
        assert sorted(names[h.label_id] for h in history) == ["Bad", "Odd"]
        assert (
            s.exec(select(func.count()).select_from(Image).where(Image.plot_type_id == fcal)).one()
            == before + 3
        )
        assert s.exec(select(Inference).where(Inference.source_key == "w" * 64)).one().plot_type_id == fcal
        labeler = get_user("labeler", session=s)
        assert can(labeler, "label", fcal, session=s)

        root = get_user("admin", session=s)
        assert admin.hide_plot_type(root, "TOF_rates", session=s).hidden
        assert admin.rename_plot_type(root, "TOF_rates", "tof_rates", session=s).name == "tof_rates"
        assert admin.delete_plot_type(root, "tof_rates", session=s).empty  # nothing in it: no purge needed
        gone = admin.delete_plot_type(root, "CDC_pedestal", session=s, purge=True)
        assert gone.images == 8
    with session_scope(engine) as s:
        assert {p.name for p in s.exec(select(PlotType)).all()} >= {"FCAL_occupancy", "BCAL_energy"}
        assert not s.exec(select(PlotType).where(PlotType.name == "CDC_pedestal")).all()


def col_in_ids(column, ids):
    from sqlmodel import col

    return col(column).in_(ids)


def test_admin_page_renames_and_merges(seeded):
    engine, seed = seeded
    at = _open(seed.users["admin"], adm_plot_type="TOF_rates")
    assert not at.exception, [e.value for e in at.exception]
    at.text_input(key="adm_rename_to").set_value("TOF_rates2")
    next(b for b in at.button if b.label == "Rename").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Renamed TOF_rates to TOF_rates2" in m.value for m in at.success)
    assert at.selectbox(key="adm_plot_type").value == "TOF_rates2"
    at.selectbox(key="adm_merge_into").set_value("CDC_hits")
    next(b for b in at.button if b.label == "Merge").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Merged TOF_rates2 into CDC_hits" in m.value for m in at.success)
    with session_scope(engine) as s:
        from sqlmodel import select

        names = set(s.exec(select(PlotType.name)).all())
    assert "TOF_rates2" not in names and "TOF_rates" not in names and "CDC_hits" in names


def test_a_merge_leaves_one_active_and_at_most_one_shadow_model(seeded):
    """The source's active and shadow models step down when the target has its own."""
    from sqlmodel import select

    from hydra.services import admin

    engine, seed = seeded
    fcal = seed.plot_types["FCAL_occupancy"]
    with session_scope(engine) as s:
        root = get_user("admin", session=s)
        wrong = admin.add_plot_type(root, "FCAL_Occupancy", ["Good", "Bad"], session=s)

        def model(pt_id: int, **flags) -> Model:
            m = Model(
                plot_type_id=pt_id, head="classifier", path="/m/x", input_height=8, input_width=8, **flags
            )
            s.add(m)
            return m

        model(fcal, shadow=True)
        model(wrong.id, active=True)
        model(wrong.id, shadow=True)
        s.flush()
        admin.merge_plot_types(root, wrong.id, fcal, session=s)
    with session_scope(engine) as s:
        flags = s.exec(select(Model.active, Model.shadow).where(Model.plot_type_id == fcal)).all()
    assert sum(a for a, _ in flags) == 1 and sum(sh for _, sh in flags) == 1
    with session_scope(engine) as s:
        assert active_model(fcal, session=s).id == seed.models["FCAL_occupancy"]
