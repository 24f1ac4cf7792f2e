import time
def test_hang(redis_server, postgres_server):
    time.sleep(60)
