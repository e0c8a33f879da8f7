"""Slack: answers in threads and DMs, 👍/👎 feedback, admin uploads by slash command (slack-bolt, slack-sdk).

    app.py       the bolt AsyncApp and its listeners (events, /policy, feedback, modals)
    replier.py   what posts: answers (thread status, fallbacks), the busy reply, private notes; alone in
                 the answer workers
    render.py    Answer → Block Kit blocks and fallback text; modals; pure functions
    uploads.py   the upload modal, and fetching the uploaded file from Slack safely
    http.py      mount(): POST /slack/events on `policybot serve`, or Socket Mode
"""
