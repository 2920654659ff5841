"""The image's healthcheck finds the port the exporter listens on."""

from exporter.healthcheck import listen_address


def test_flag_of_the_main_process_wins():
    assert listen_address(["exp", "--web.listen-address=127.0.0.1:1"], {}) == "127.0.0.1:1"
    assert listen_address(["exp", "--web.listen-address", "[::1]:2"], {}) == "[::1]:2"


def test_then_the_environment_then_the_default():
    env = {"DOCKER_STORAGE_EXPORTER_WEB_LISTEN_ADDRESS": ":3"}
    assert listen_address(["exp"], env) == ":3"
    assert listen_address([], {}) == ":9818"
