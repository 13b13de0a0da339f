"""Admin: plot types (labels, colours, problems, collect percentage, masks; rename,
merge, hide, delete), users, permissions and active models, without touching the database.

The page is shown to admins only, and every change goes through
``hydra.services.admin``, which checks the admin role again.
"""

from __future__ import annotations

import pandas as pd
import shell
import streamlit as st
from PIL import Image as PILImage

from hydra.auth import ROLES
from hydra.services import admin, library, run

shell.page(viewing=False)
st.title("Admin")
user = shell.require_permission("admin")
with shell.session() as s:
    types = run.plot_types(session=s)
    groups = {g.id: g.name for g in run.plot_groups(session=s)}
MASK_COLUMNS = list(admin.MASK_COLUMNS)
FLASH = "admin_flash"
shell.show_outcome(FLASH)


def act(fn, *args, done: str, **kwargs) -> None:
    """Run an admin service call (as a widget callback); its outcome waits in the session state."""
    shell.run_service(fn, *args, outcome=FLASH, done=done, **kwargs)


def state(key: str, default=None):
    return st.session_state.get(key, default)


def split(text: str | None) -> list[str]:
    return [x.strip() for x in (text or "").split(",") if x.strip()]


# a keyed tab bar keeps its tab when an action reruns the page (e.g. after "Add user")
tab_types, tab_users, tab_perms, tab_models = st.tabs(
    ["Plot types", "Users", "Permissions", "Active models"], key="adm_tabs", on_change="rerun"
)


def plot_type_settings(pt) -> None:
    k = pt.id

    def save() -> None:
        act(
            admin.update_plot_type, user, pt.id, collect_percent=state(f"adm_collect_{k}"),
            mask=admin.mask_after_edits(pt.mask or [], state(f"adm_mask_{k}")), hidden=state(f"adm_hidden_{k}"),
            description=state(f"adm_description_{k}"), group=state(f"adm_group_{k}"), done=f"Saved {pt.name}.",
        )  # fmt: skip

    with st.form(f"pt_settings_{k}"):
        c1, c2, c3 = st.columns(3)
        c1.number_input("Collect percent", 0.0, 100.0, float(pt.collect_percent), 0.5, key=f"adm_collect_{k}")
        c2.text_input("Group (detector system)", groups.get(pt.group_id, ""), key=f"adm_group_{k}")
        c3.checkbox("Hidden on the Run page", pt.hidden, key=f"adm_hidden_{k}")
        st.text_input("Description", pt.description, key=f"adm_description_{k}")
        st.markdown("**Mask**: rectangles to ignore, in fractions of the image (0..1).")
        st.data_editor(
            pd.DataFrame(pt.mask or [], columns=MASK_COLUMNS, dtype=float),
            num_rows="dynamic",
            key=f"adm_mask_{k}",
        )
        st.form_submit_button("Save plot type", on_click=save)
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
        labels = run.labels_of(pt.id, session=s)

    def save() -> None:
        changes = {
            lb.id: (state(f"adm_color_{lb.id}"), state(f"adm_problem_{lb.id}"))
            for lb in labels
            if (state(f"adm_color_{lb.id}", "").lower(), state(f"adm_problem_{lb.id}"))
            != (lb.color.lower(), lb.is_problem)
        }
        act(save_labels, user, changes, done=f"Saved {len(changes)} label(s) of {pt.name}.")

    def add() -> None:
        name = (state(f"adm_new_label_{pt.id}") or "").strip()
        act(admin.add_plot_type_label, user, pt.id, name, done=f"Added the label {name} to {pt.name}.")

    with st.form(f"pt_labels_{pt.id}"):
        for lb in labels:
            c1, c2, c3 = st.columns([2, 1, 1])
            c1.markdown(f"**{lb.name}**")
            c2.color_picker("Colour", lb.color, key=f"adm_color_{lb.id}")
            c3.checkbox("Problem", lb.is_problem, key=f"adm_problem_{lb.id}")
        st.form_submit_button("Save labels", on_click=save)
    with st.form(f"pt_add_label_{pt.id}", clear_on_submit=True):
        st.text_input("New label", key=f"adm_new_label_{pt.id}")
        st.form_submit_button("Add label", on_click=add)


def manage_plot_type(pt) -> None:
    """Rename, merge into another, hide, delete: each through ``hydra.services.admin`` (admin only)."""
    others = [p.name for p in types if p.id != pt.id]

    def rename() -> None:
        new = (state("adm_rename_to") or "").strip()
        act(admin.rename_plot_type, user, pt.id, new, done=f"Renamed {pt.name} to {new}.")
        if st.session_state.get(FLASH, ("",))[0] == "success":
            st.session_state["adm_plot_type"] = new

    def merge() -> None:
        target = state("adm_merge_into")
        act(admin.merge_plot_types, user, pt.id, target,
            done=f"Merged {pt.name} into {target}: its images, labels, inferences and models are now {target}'s.")  # fmt: skip
        if st.session_state.get(FLASH, ("",))[0] == "success":
            st.session_state["adm_plot_type"] = target

    def remove() -> None:
        act(
            admin.delete_plot_type,
            user,
            pt.id,
            purge=bool(state("adm_delete_purge")),
            done=f"Deleted {pt.name}.",
        )
        if st.session_state.get(FLASH, ("",))[0] == "success":
            st.session_state.pop("adm_plot_type", None)

    with shell.session() as s:
        usage = admin.plot_type_usage(pt.id, session=s)
    with st.expander(f"Rename, merge or delete {pt.name}", expanded=False):
        st.caption(f"{pt.name} holds {usage}.")
        c1, c2 = st.columns(2)
        with c1.form("adm_rename", clear_on_submit=True):
            st.text_input(
                "New name", key="adm_rename_to", help="Letters, digits and _; new files must use it"
            )
            st.form_submit_button("Rename", on_click=rename)
        with c2.form("adm_merge"):
            st.selectbox("Merge into", others, key="adm_merge_into",
                         help="Moves every image, label, inference, alarm and model, then deletes this one")  # fmt: skip
            st.form_submit_button("Merge", on_click=merge, disabled=not others)
        with st.form("adm_delete"):
            st.checkbox("Also delete its images, labels, inferences and models (files stay on disk)",
                        key="adm_delete_purge")  # fmt: skip
            st.form_submit_button("Delete plot type", on_click=remove, type="primary")


def create_plot_type() -> None:
    name = (state("adm_new_pt_name") or "").strip()
    act(
        admin.add_plot_type, user, name, split(state("adm_new_pt_labels")), problem=split(state("adm_new_pt_problem")),
        group=(state("adm_new_pt_group") or "").strip() or None,
        collect_percent=float(state("adm_new_pt_collect", shell.config().plot_types.collect_percent)),
        done=f"Created {name}.",
    )  # fmt: skip


with tab_types:
    if types:
        pt = {p.name: p for p in types}[
            st.selectbox("Plot type", [p.name for p in types], key="adm_plot_type")
        ]
        plot_type_settings(pt)
        manage_plot_type(pt)
        st.subheader("Labels")
        label_settings(pt)
    else:
        shell.empty_state("No plot types yet.", "Create the first one below.")
    st.subheader("New plot type")
    with st.form("adm_new_pt", clear_on_submit=True):
        c1, c2 = st.columns(2)
        c1.text_input("Name (as in the file names)", key="adm_new_pt_name")
        c2.text_input("Labels, comma separated", "Good,Bad,NoData", key="adm_new_pt_labels")
        c1.text_input("Problem labels", "Bad", key="adm_new_pt_problem")
        c2.text_input("Group", key="adm_new_pt_group")
        c1.number_input("Collect percent", 0.0, 100.0, float(shell.config().plot_types.collect_percent), 0.5,
                        key="adm_new_pt_collect", help="Fine images kept at random to watch the model in situ")  # fmt: skip
        st.form_submit_button("Create plot type", on_click=create_plot_type)

with tab_users:
    with shell.session() as s:
        people = admin.users(session=s)
    st.dataframe(pd.DataFrame(people, columns=["User", "Role"]), hide_index=True)
    with st.form("adm_add_user", clear_on_submit=True):
        c1, c2, c3 = st.columns(3)
        c1.text_input("User name", key="adm_user_name")
        c2.text_input("Password", type="password", key="adm_user_password")
        c3.selectbox("Role", ROLES, index=ROLES.index("labeler"), key="adm_user_role")
        st.form_submit_button(
            "Add user",
            on_click=lambda: act(
                admin.add_user, user, (state("adm_user_name") or "").strip(), state("adm_user_password") or "",
                state("adm_user_role"), done=f"Added {state('adm_user_name')}.",
            ),
        )  # fmt: skip
    with st.form("adm_role"):
        c1, c2 = st.columns(2)
        c1.selectbox("User", [p[0] for p in people], key="adm_role_user")
        c2.selectbox("New role", ROLES, key="adm_role_role")
        st.form_submit_button(
            "Change role",
            on_click=lambda: act(
                admin.set_role, user, state("adm_role_user"), state("adm_role_role"),
                done=f"{state('adm_role_user')} is now {state('adm_role_role')}.",
            ),
        )  # fmt: skip

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
            c1.selectbox("User", [p[0] for p in people], key="adm_perm_user")
            c2.selectbox("Plot type", [p.name for p in types], key="adm_perm_plot_type")
            c3.checkbox("May label", True, key="adm_perm_label")
            c4.checkbox("May change thresholds", False, key="adm_perm_thresholds")
            grant, revoke = st.columns(2)
            grant.form_submit_button(
                "Grant",
                on_click=lambda: act(
                    admin.set_permission, user, state("adm_perm_user"), state("adm_perm_plot_type"),
                    label=bool(state("adm_perm_label")), thresholds=bool(state("adm_perm_thresholds")),
                    done=f"Saved the rights of {state('adm_perm_user')} on {state('adm_perm_plot_type')}.",
                ),
            )  # fmt: skip
            revoke.form_submit_button(
                "Revoke",
                on_click=lambda: act(
                    admin.revoke, user, state("adm_perm_user"), state("adm_perm_plot_type"),
                    done=f"Revoked the rights of {state('adm_perm_user')} on {state('adm_perm_plot_type')}.",
                ),
            )  # fmt: skip

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
        c3.button(
            "Activate",
            key=f"adm_activate_{pt.id}",
            disabled=unchanged,
            on_click=act,
            args=(library.activate, user, options[chosen]),
            kwargs={"done": f"Model {options[chosen]} is active on {pt.name}."},
        )
