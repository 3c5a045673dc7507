"""`ravlm-bench plugins` and `ravlm-bench list KIND`."""

from __future__ import annotations

import json

from tabulate import tabulate

from ravlm_bench.plugin_host.registry import KINDS


def add_parser(subparsers, common) -> None:
    p = subparsers.add_parser("plugins", parents=[common], help="show loaded plugins")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=show_plugins)

    p = subparsers.add_parser("list", parents=[common], help="list components of one kind")
    p.add_argument("kind", choices=list(KINDS))
    p.add_argument("--params", action="store_true",
                   help="each component's parameters: type, default, help")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=list_components)


def plugin_rows(ctx) -> list[dict]:
    pm, registry = ctx.plugin_manager, ctx.registry
    rows = []
    for name, source in sorted(pm.sources.items()):
        plugin = pm.get_plugin(name)
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or []) if plugin else []
        broken = pm.broken.get(name)
        rows.append({
            "plugin": name,
            "distribution": f"{source.distribution} {source.version}".strip() or source.origin,
            "hooks": hooks,
            "components": registry.by_plugin(name),
            "status": f"broken: {broken.error}" if broken else (
                "disabled" if pm.is_blocked(name) else "ok"),
        })
    return rows


def show_plugins(ctx) -> int:
    rows = plugin_rows(ctx)
    if ctx.args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [
        [r["plugin"], r["distribution"], "\n".join(r["hooks"]),
         "\n".join(f"{k}: {', '.join(v)}" for k, v in r["components"].items()), r["status"]]
        for r in rows
    ]
    print(tabulate(table, headers=["plugin", "distribution", "hooks", "components", "status"],
                   tablefmt="simple_grid"))
    return 0


def list_components(ctx) -> int:
    entries = list(ctx.registry.entries(ctx.args.kind))
    rows = [{"name": e.name, "plugin": e.plugin, "description": e.description} for e in entries]
    if ctx.args.params or ctx.args.json:
        for row, entry in zip(rows, entries, strict=True):
            row["params"] = [p.as_dict() for p in entry.params.params]
            row["params_declared"] = entry.params.declared
            row["accepts_other_params"] = entry.params.open
    if ctx.args.json:
        print(json.dumps(rows, indent=2, default=repr))
    elif ctx.args.params:
        print("\n\n".join(_params_block(row) for row in rows))
    else:
        print(tabulate([list(r.values()) for r in rows], headers=["name", "plugin", "description"]))
    return 0


def _params_block(row: dict) -> str:
    head = f"{row['name']} ({row['plugin']}): {row['description']}"
    if not row["params_declared"]:
        head += "\n  (parameters inferred from the factory's signature)"
    lines = [[p["name"], p["type"], "required" if p["required"] else json.dumps(p["default"]),
              p["help"]] for p in row["params"]]
    if not lines:
        return head + "\n  no parameters"
    table = tabulate(lines, headers=["parameter", "type", "default", "help"])
    return head + "\n" + "\n".join("  " + line for line in table.splitlines())
