def test_login_and_report(api, stack):
    from support.clients import SocketClient
    user = api.new_user()
    sock = SocketClient(stack.notifiers[0].url, user.token).connect()
    rep = user.create({"rows": 50, "columns": 3, "seed": 1})
    sock.wait_for(lambda n, p: n == "report.succeeded" and p["report_id"] == rep["id"], 60)
    done = user.get(rep["id"])
    assert done["status"] == "succeeded"
    sock.disconnect()
