"""``hydra init``, ``hydra plot-type ...``, ``hydra user ...``."""

from __future__ import annotations

import sys

import typer

from hydra.cli.common import (
    ConfigOption,
    JsonOption,
    console,
    engine_for,
    fail,
    get_config,
    out,
    print_json_lines,
)

plot_type_app = typer.Typer(help="Plot types and their labels.", no_args_is_help=True)
user_app = typer.Typer(help="Users and their permissions.", no_args_is_help=True)


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def init(config: str = ConfigOption) -> None:
    """Create HYDRA_HOME, its storage folders and the database, or upgrade it.

    Safe to run any number of times: an up-to-date database is left as it is.

    Example: HYDRA_DB_URL=mysql+pymysql://hydra:secret@db:3306/hydra hydra init
    """
    from hydra.db.migrate import upgrade_to_head

    cfg = get_config(config)
    cfg.ensure_dirs()
    try:
        before, after = upgrade_to_head(engine_for(cfg))
    except Exception as exc:  # noqa: BLE001 - the database's own message is the useful part
        fail(f"cannot initialise the database at {cfg.database_url}: {exc}")
    state = "created" if before is None else ("up to date" if before == after else f"upgraded from {before}")
    console.print(f"[green]database {state}[/] at revision {after}: {_safe_url(cfg.database_url)}")
    console.print(f"HYDRA_HOME: {cfg.home.resolve()}  input: {cfg.input_dir}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@plot_type_app.command("add")
def plot_type_add(
    name: str = typer.Argument(..., help="Plot type name, e.g. fcal_occupancy."),
    labels: str = typer.Option("Good,Bad,NoData", "--labels", help="Comma-separated labels."),
    problem: str = typer.Option(None, "--problem", help="Labels that count as a problem (default: Bad)."),
    colors: str = typer.Option(None, "--colors", help="Comma-separated colours, one per label (#rrggbb)."),
    group: str = typer.Option(None, "--group", help="Plot group, usually the detector system."),
    collect: float = typer.Option(
        None,
        "--collect",
        min=0,
        max=100,
        help="Percent of fine images kept at random (default: plot_types.collect_percent of the config).",
    ),  # fmt: skip
    config: str = ConfigOption,
) -> None:
    """Add a plot type with its labels.

    Example: hydra plot-type add fcal_occupancy --labels Good,Bad,NoData --problem Bad --group FCAL
    """
    from hydra.db.engine import session_scope
    from hydra.services import admin

    cfg = get_config(config)
    try:
        with session_scope(engine_for(cfg)) as session:
            pt = admin.add_plot_type(
                admin.OPERATOR,
                name,
                _split(labels),
                session=session,
                problem=_split(problem) if problem is not None else None,
                colors=_split(colors) or None,
                group=group,
                collect_percent=cfg.plot_types.collect_percent if collect is None else collect,
            )
            console.print(f"[green]plot type {pt.name} added[/] (id {pt.id}) with labels {labels}")
    except ValueError as exc:
        fail(str(exc))


@plot_type_app.command("list")
def plot_type_list(json: bool = JsonOption, config: str = ConfigOption) -> None:
    """List plot types with their labels, group and active model.

    Example: hydra plot-type list --json
    """
    from dataclasses import asdict

    from hydra.db.engine import session_scope
    from hydra.services import admin

    cfg = get_config(config)
    with session_scope(engine_for(cfg)) as session:
        rows = [asdict(row) for row in admin.plot_type_rows(session=session)]
    if json:
        print_json_lines(rows)
        return
    from rich.table import Table

    table = Table("name", "group", "labels", "problem", "active model")
    for r in rows:
        table.add_row(
            r["name"],
            r["group"] or "",
            ",".join(r["labels"]),
            ",".join(r["problem_labels"]),
            str(r["active_model"] or "-"),
        )
    out.print(table)


def _plot_type_change(action, *args, done, **kwargs) -> None:
    """Run a plot-type change of ``hydra.services.admin`` as the host's operator; errors become messages."""
    from hydra.db.engine import session_scope
    from hydra.services import admin

    cfg = get_config(kwargs.pop("config", None))
    try:
        with session_scope(engine_for(cfg)) as session:
            result = action(admin.OPERATOR, *args, session=session, **kwargs)
            message = done(result)
    except (ValueError, LookupError) as exc:
        fail(str(exc))
    console.print(message, highlight=False)


@plot_type_app.command("rename")
def plot_type_rename(
    name: str = typer.Argument(..., help="The plot type's name now."),
    new_name: str = typer.Argument(..., help="Its new name (as new file names will carry it)."),
    config: str = ConfigOption,
) -> None:
    """Rename a plot type; its images, labels, inferences and models stay with it.

    Example: hydra plot-type rename FCAL_Occupancy fcal_occupancy_v2
    """
    from hydra.services import admin

    _plot_type_change(admin.rename_plot_type, name, new_name, config=config,
                      done=lambda pt: f"[green]renamed[/] {name} to {pt.name}")  # fmt: skip


@plot_type_app.command("merge")
def plot_type_merge(
    source: str = typer.Argument(..., help="The plot type to merge away (e.g. one a misnamed file created)."),
    target: str = typer.Argument(..., help="The plot type that keeps everything."),
    config: str = ConfigOption,
) -> None:
    """Move a plot type's images, labels, inferences, alarms and models into another one, then delete it.

    Labels are matched by name (a label the target lacks is added to it).

    Example: hydra plot-type merge FCAL_occupancy fcal_occupancy
    """
    from hydra.services import admin

    _plot_type_change(admin.merge_plot_types, source, target, config=config,
                      done=lambda moved: f"[green]merged[/] {source} into {target}: moved {moved}")  # fmt: skip


@plot_type_app.command("hide")
def plot_type_hide(
    name: str = typer.Argument(..., help="Plot type name."),
    show: bool = typer.Option(False, "--show", help="Show it on the Run page again."),
    config: str = ConfigOption,
) -> None:
    """Hide a plot type from the Run page (it is still classified and kept).

    Example: hydra plot-type hide tof_rates   (and: hydra plot-type hide tof_rates --show)
    """
    from hydra.services import admin

    _plot_type_change(admin.hide_plot_type, name, not show, config=config,
                      done=lambda pt: f"{pt.name} is {'hidden' if pt.hidden else 'shown'} on the Run page")  # fmt: skip


@plot_type_app.command("delete")
def plot_type_delete(
    name: str = typer.Argument(..., help="Plot type name."),
    purge: bool = typer.Option(
        False, "--purge", help="Also delete its images, labels, inferences and models (files stay on disk)."
    ),
    config: str = ConfigOption,
) -> None:
    """Delete a plot type; one that holds images, inferences or models needs --purge (or merge it instead).

    Example: hydra plot-type delete FCAL_Occupancy
    """
    from hydra.services import admin

    _plot_type_change(admin.delete_plot_type, name, purge=purge, config=config,
                      done=lambda gone: f"[green]deleted[/] {name} ({gone})")  # fmt: skip


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name."),
    admin: bool = typer.Option(False, "--admin", help="Give the admin role (may do everything)."),
    role: str = typer.Option(None, "--role", help="admin, expert, labeler or viewer (default labeler)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
    config: str = ConfigOption,
) -> None:
    """Add a user; the password is prompted for (or read from stdin) and stored hashed.

    Example: echo 's3cret' | hydra user add alice --password-stdin
    """
    from hydra.db.engine import session_scope
    from hydra.services.admin import OPERATOR, add_user

    cfg = get_config(config)
    password = _read_password(password_stdin)
    try:
        with session_scope(engine_for(cfg)) as session:
            user = add_user(
                OPERATOR, name, password, "admin" if admin else (role or "labeler"), session=session
            )
            console.print(f"[green]user {user.name} added[/] with role {user.role}")
    except ValueError as exc:
        fail(str(exc))


@user_app.command("grant")
def user_grant(
    name: str = typer.Argument(..., help="User name."),
    plot_type: str = typer.Argument(..., help="Plot type name."),
    label: bool = typer.Option(True, "--label/--no-label", help="May label images of this plot type."),
    thresholds: bool = typer.Option(False, "--thresholds", help="May change this plot type's thresholds."),
    config: str = ConfigOption,
) -> None:
    """Give a user rights on one plot type.

    Example: hydra user grant alice fcal_occupancy --label --thresholds
    """
    from hydra.db.engine import session_scope
    from hydra.db.queries import NotFoundError
    from hydra.services import admin

    cfg = get_config(config)
    try:
        with session_scope(engine_for(cfg)) as session:
            admin.set_permission(
                admin.OPERATOR, name, plot_type, session=session, label=label, thresholds=thresholds
            )
            role, capped = admin.unusable_rights(name, session=session, label=label, thresholds=thresholds)
    except NotFoundError as exc:
        fail(str(exc))
    console.print(f"[green]{name} on {plot_type}:[/] label={label} thresholds={thresholds}", highlight=False)
    if capped:
        console.print(
            f"[yellow]note:[/] {name} is a {role}, and the {role} role cannot use {' or '.join(capped)}; "
            f"hydra user role {name} {'expert' if 'thresholds' in capped else 'labeler'} gives it",
            highlight=False,
        )


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@user_app.command("role")
def user_role(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Argument(..., help="admin, expert, labeler or viewer."),
    config: str = ConfigOption,
) -> None:
    """Change a user's role: viewer reads; labeler labels where granted; expert also
    changes thresholds and acknowledges alarms where granted; admin does everything.

    Example: hydra user role alice expert
    """
    from hydra.db.engine import session_scope
    from hydra.services import admin

    cfg = get_config(config)
    try:
        with session_scope(engine_for(cfg)) as session:
            admin.set_role(admin.OPERATOR, name, role, session=session)
    except (ValueError, LookupError) as exc:
        fail(str(exc))
    console.print(f"[green]{name} is now {role}[/]", highlight=False)


@user_app.command("password")
def user_password(
    name: str = typer.Argument(..., help="User name."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the new password from standard input."
    ),
    config: str = ConfigOption,
) -> None:
    """Set a user's password (prompted for, or read from stdin); it also lifts a login lockout.

    Example: echo 'n3w-s3cret' | hydra user password alice --password-stdin
    """
    from hydra.db.engine import session_scope
    from hydra.services import admin

    cfg = get_config(config)
    password = _read_password(password_stdin)
    try:
        with session_scope(engine_for(cfg)) as session:
            admin.set_password(admin.OPERATOR, name, password, session=session)
    except (ValueError, LookupError) as exc:
        fail(str(exc))
    console.print(f"[green]password of {name} changed[/]", highlight=False)


@user_app.command("list")
def user_list(json: bool = JsonOption, config: str = ConfigOption) -> None:
    """List users, their roles and permissions.

    Example: hydra user list --json
    """
    from dataclasses import asdict

    from hydra.db.engine import session_scope
    from hydra.services import admin

    cfg = get_config(config)
    with session_scope(engine_for(cfg)) as session:
        rows = [asdict(user) for user in admin.user_rights(session=session)]
    if json:
        print_json_lines(rows)
    else:
        for r in rows:
            typer.echo(
                f"{r['name']:20} {r['role']:8} label: {','.join(r['label']) or '-'}  thresholds: {','.join(r['thresholds']) or '-'}"
            )


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(plot_type_app, name="plot-type")
    app.add_typer(user_app, name="user")
