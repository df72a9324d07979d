"""The command-line commands of each registered shape model (see :mod:`ebm3d.registry`)."""
