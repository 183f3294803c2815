"""crashtest explore: generated file-system programs, each crash state checked
against a durability model and across filesystems."""
