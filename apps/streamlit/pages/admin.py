"""Admin: plot types (labels, colours, problems, collect percentage, masks), users,
permissions and active models, without touching the database.

The page is shown to admins only, and every change goes through
``hydra.admin``, which checks the admin role again.
"""

from __future__ import annotations

import pandas as pd
import shell
import streamlit as st
from PIL import Image as PILImage

from hydra import admin, library
from hydra.auth import ROLES
from hydra.db import pages as q
from hydra.db.queries import labels_of

shell.page(viewing=False)
st.title("Admin")
user = shell.require_permission("admin")
with shell.session() as s:
    types = q.plot_types(session=s)
    groups = {g.id: g.name for g in q.plot_groups(session=s)}
flash = st.session_state.pop("admin_flash", None)
if flash:
    st.success(flash)


def act(fn, *args, done: str, **kwargs) -> None:
    """Run an admin service call; on success remember the message and redraw the page."""
    if shell.run_service(fn, *args, **kwargs) is not None:
        st.session_state["admin_flash"] = done
        st.rerun()


tab_types, tab_users, tab_perms, tab_models = st.tabs(["Plot types", "Users", "Permissions", "Active models"])


def plot_type_settings(pt) -> None:
    with st.form(f"pt_settings_{pt.id}"):
        c1, c2, c3 = st.columns(3)
        collect = c1.number_input(
            "Collect percent", 0.0, 100.0, float(pt.collect_percent), 0.5, key="adm_collect"
        )
        group = c2.text_input("Group (detector system)", groups.get(pt.group_id, ""), key="adm_group")
        hidden = c3.checkbox("Hidden on the Run page", pt.hidden, key="adm_hidden")
        description = st.text_input("Description", pt.description, key="adm_description")
        st.markdown("**Mask**: rectangles to ignore, in fractions of the image (0..1).")
        mask = st.data_editor(
            pd.DataFrame(pt.mask or [], columns=["x0", "y0", "x1", "y1"], dtype=float),
            num_rows="dynamic",
            key=f"adm_mask_{pt.id}",
        )
        if st.form_submit_button("Save plot type"):
            rects = [list(r) for r in mask.dropna().itertuples(index=False)]
            act(
                admin.update_plot_type, user, pt.id, collect_percent=collect, mask=rects, hidden=hidden,
                description=description, group=group, done=f"Saved {pt.name}.",
            )  # fmt: skip
    with shell.session() as s:
        recent = admin.recent_image_path(pt.id, session=s)
    if recent and pt.mask:
        with PILImage.open(recent) as img:
            st.image(
                admin.mask_preview(img, pt.mask), caption=f"Mask on the newest image ({recent})", width=420
            )
    elif not recent:
        st.caption("No image of this plot type on disk yet to preview the mask on.")


def save_labels(actor, changes: dict, *, session) -> int:
    """All label edits of the form in one transaction."""
    for label_id, (color, problem) in changes.items():
        admin.set_label(actor, label_id, session=session, color=color, is_problem=problem)
    return len(changes)


def label_settings(pt) -> None:
    with shell.session() as s:
        labels = labels_of(pt.id, session=s)
    with st.form(f"pt_labels_{pt.id}"):
        edits = {}
        for lb in labels:
            c1, c2, c3 = st.columns([2, 1, 1])
            c1.markdown(f"**{lb.name}**")
            color = c2.color_picker("Colour", lb.color, key=f"adm_color_{lb.id}")
            problem = c3.checkbox("Problem", lb.is_problem, key=f"adm_problem_{lb.id}")
            edits[lb.id] = (lb, color, problem)
        if st.form_submit_button("Save labels"):
            changes = {
                lb.id: (color, problem)
                for lb, color, problem in edits.values()
                if (color.lower(), problem) != (lb.color.lower(), lb.is_problem)
            }
            act(save_labels, user, changes, done=f"Saved {len(changes)} label(s) of {pt.name}.")
    with st.form(f"pt_add_label_{pt.id}", clear_on_submit=True):
        name = st.text_input("New label", key="adm_new_label")
        if st.form_submit_button("Add label") and name:
            act(admin.add_plot_type_label, user, pt.id, name.strip(), done=f"Added the label {name}.")


with tab_types:
    if types:
        pt = {p.name: p for p in types}[
            st.selectbox("Plot type", [p.name for p in types], key="adm_plot_type")
        ]
        plot_type_settings(pt)
        st.subheader("Labels")
        label_settings(pt)
    else:
        shell.empty_state("No plot types yet.", "Create the first one below.")
    st.subheader("New plot type")
    with st.form("adm_new_pt", clear_on_submit=True):
        c1, c2 = st.columns(2)
        name = c1.text_input("Name (as in the file names)", key="adm_new_pt_name")
        labels_text = c2.text_input("Labels, comma separated", "Good,Bad,NoData", key="adm_new_pt_labels")
        problem_text = c1.text_input("Problem labels", "Bad", key="adm_new_pt_problem")
        group = c2.text_input("Group", key="adm_new_pt_group")
        if st.form_submit_button("Create plot type"):
            split = [x.strip() for x in labels_text.split(",") if x.strip()]
            problems = [x.strip() for x in problem_text.split(",") if x.strip()]
            act(
                admin.add_plot_type, user, name.strip(), split, problem=problems, group=group.strip() or None,
                done=f"Created {name}.",
            )  # fmt: skip

with tab_users:
    with shell.session() as s:
        people = admin.users(session=s)
    st.dataframe(pd.DataFrame(people, columns=["User", "Role"]), hide_index=True)
    with st.form("adm_add_user", clear_on_submit=True):
        c1, c2, c3 = st.columns(3)
        new_name = c1.text_input("User name", key="adm_user_name")
        password = c2.text_input("Password", type="password", key="adm_user_password")
        role = c3.selectbox("Role", ROLES, index=ROLES.index("labeler"), key="adm_user_role")
        if st.form_submit_button("Add user"):
            act(admin.add_user, user, new_name.strip(), password, role, done=f"Added {new_name}.")
    with st.form("adm_role"):
        c1, c2 = st.columns(2)
        who = c1.selectbox("User", [p[0] for p in people], key="adm_role_user")
        role = c2.selectbox("New role", ROLES, key="adm_role_role")
        if st.form_submit_button("Change role"):
            act(admin.set_role, user, who, role, done=f"{who} is now {role}.")

with tab_perms:
    with shell.session() as s:
        perms = admin.permissions(session=s)
        people = admin.users(session=s)
    st.dataframe(
        pd.DataFrame(
            [(p.user, p.plot_type, p.can_label, p.can_threshold) for p in perms],
            columns=["User", "Plot type", "Label", "Thresholds"],
        ),
        hide_index=True,
    )
    if types and people:
        with st.form("adm_perm"):
            c1, c2, c3, c4 = st.columns(4)
            who = c1.selectbox("User", [p[0] for p in people], key="adm_perm_user")
            where = c2.selectbox("Plot type", [p.name for p in types], key="adm_perm_plot_type")
            may_label = c3.checkbox("May label", True, key="adm_perm_label")
            may_threshold = c4.checkbox("May change thresholds", False, key="adm_perm_thresholds")
            grant, revoke = st.columns(2)
            if grant.form_submit_button("Grant"):
                act(
                    admin.set_permission, user, who, where, label=may_label, thresholds=may_threshold,
                    done=f"Saved the rights of {who} on {where}.",
                )  # fmt: skip
            if revoke.form_submit_button("Revoke"):
                act(admin.revoke, user, who, where, done=f"Revoked the rights of {who} on {where}.")

with tab_models:
    if not types:
        shell.empty_state("No plot types yet.", "Create one in the Plot types tab.")
    for pt in types:
        with shell.session() as s:
            models = library.models_of(pt.id, session=s)
        c1, c2, c3 = st.columns([1.5, 3, 1])
        c1.markdown(f"**{pt.name}**")
        if not models:
            c2.caption("no model yet")
            continue
        options = {
            f"{'★ ' if m.active else ''}model {m.id} ({m.head}, {m.created_at:%Y-%m-%d})": m.id
            for m in models
        }
        current = next((i for i, m in enumerate(models) if m.active), 0)
        chosen = c2.selectbox(
            "Model", list(options), index=current, key=f"adm_model_{pt.id}", label_visibility="collapsed"
        )
        unchanged = models[current].active and options[chosen] == models[current].id
        if c3.button("Activate", key=f"adm_activate_{pt.id}", disabled=unchanged):
            act(
                admin.set_active_model,
                user,
                options[chosen],
                done=f"Model {options[chosen]} is active on {pt.name}.",
            )
