"""The ``scada`` command line: the top layer, the only product code that starts the simulator.

``cli.main`` holds the table of subcommands; each subcommand is a module of this package exposing
``add_arguments(parser)`` and ``main(args) -> int``, imported only when chosen (``scada --help`` and
``scada check`` load no Qt and no protocol library).
"""
