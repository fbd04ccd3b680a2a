#!/usr/bin/env python3
"""Derives device_inventory_info.schema.json (OCSF 1.8.0 class 5001) from
kernel_activity.schema.json (class 1003), both in this directory.

In OCSF 1.8.0 the two classes have the same attributes, types, profile
tags and requirements except Kernel Activity's `kernel`, and `actor`,
which Kernel Activity requires and Device Inventory Info does not (checked
against the compiled schema, ocsf-1.8.0-compiled.json.gz:
`classes.inventory_info.attributes` is `classes.kernel_activity.attributes`
without `kernel`, the same attribute by attribute but for `actor`'s
requirement; both classes list the profiles cloud, datetime, host, osint,
security_control). So the 5001
schema is the 1003 one with `kernel` removed and the class's own
constants: class_uid 5001, category_uid 5 (Discovery), activity_id 0
Unknown, 1 Log, 2 Collect, 99 Other, type_uid = 5001 * 100 + activity_id.

Run from this directory: python3 derive_device_inventory_info.py
"""
import json

ACTIVITIES = [0, 1, 2, 99]

with open("kernel_activity.schema.json") as f:
    schema = json.load(f)

schema["$id"] = "ocsf-1.8.0/device_inventory_info.schema.json"
schema["title"] = "Device Inventory Info"
schema["description"] = (
    "OCSF 1.8.0 Device Inventory Info (class_uid 5001); derived from "
    "kernel_activity.schema.json by derive_device_inventory_info.py"
)
props = schema["properties"]
del props["kernel"]
schema["required"] = [r for r in schema["required"] if r not in ("kernel", "actor")]
props["class_uid"] = {"const": 5001}
props["category_uid"] = {"const": 5}
props["activity_id"] = {"enum": ACTIVITIES, "type": "integer"}
props["type_uid"] = {"enum": [500100 + a for a in ACTIVITIES], "type": "integer"}
schema["allOf"] = [
    e for e in schema["allOf"] if "activity_id" not in json.dumps(e.get("if", {}))
] + [
    {
        "if": {"properties": {"activity_id": {"const": a}}, "required": ["activity_id"]},
        "then": {"properties": {"type_uid": {"const": 500100 + a}}},
    }
    for a in ACTIVITIES
]
# The `kernel` object is no longer referenced by the class itself; keep the
# other objects as they are (objects may reference each other).
with open("device_inventory_info.schema.json", "w") as f:
    json.dump(schema, f, indent=1, sort_keys=True)
    f.write("\n")
