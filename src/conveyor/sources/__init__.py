"""Where items come from: the Item, folders, globs, record files, groups of a table, iterables, the
watched folder."""
