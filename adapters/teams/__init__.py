"""The Microsoft Teams adapter (Bot Framework, botbuilder 4.17).

    http.py     mount(): POST /api/messages: authentication, CloudAdapter, invoke responses, background turns
    bot.py      the TeamsActivityHandler: questions, mentions, commands, feedback invokes, admin uploads
    render.py   the core's plain values as Bot Framework activities (citations entity, feedback loop); pure
    uploads.py  file attachments sent in personal chat: find them and download them safely
    manifest/   the Teams app manifest template and icons (`python -m adapters.teams.manifest`)
"""
