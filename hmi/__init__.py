"""Desktop operator console (PyQt6 + pyqtgraph). Talks to the server only through its API.

    hmi.bridge        the one place with sockets and threads (HTTP + WebSocket channels, reconnection)
    hmi.console       ConsoleModel: Qt signals over the pure models every widget takes
    hmi.models.*      pure logic, tested without Qt (alarms, map, junction, trends, journal, commands, layouts)
    hmi.style         the style guide: greys, and colour only for alarms (defined once)
    hmi.overview      Level 1 · hmi.area_views Level 2 · hmi.equipment_views Level 3 · hmi.diagnostics Level 4
    hmi.alarms_view   banner + alarm list · hmi.journal_view · hmi.trends_view · hmi.commands_view
    hmi.workorders_view  work-order list, feed and map layer · hmi.dispatch  the dispatch dialog
    hmi.mainwindow    window, navigation, login dialog · cli.hmi  ``scada hmi``

See docs/hmi.md.
"""
