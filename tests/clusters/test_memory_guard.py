"""The memory guard's rules (clusters/health/memory_guard.py), the same for every target."""

from clusters.health.memory_guard import (
    ContainerMemory,
    container_problems,
    fit_problem,
    task_memory,
)

HOW = "set memory on it"


def test_a_container_with_no_hard_limit_is_named_with_how_to_set_one():
    problems = container_problems(
        "web on demo", [ContainerMemory("app", 256), ContainerMemory("sidecar", None, 64)], HOW
    )

    assert problems == [
        "web on demo: container sidecar has no hard memory limit, so one runaway process "
        "could take its host down: set memory on it"
    ]


def test_a_reservation_above_the_hard_limit_is_a_problem_and_one_below_is_not():
    assert container_problems("web", [ContainerMemory("app", 256, 128)], HOW) == []
    (problem,) = container_problems("web", [ContainerMemory("app", 256, 512)], HOW)
    assert "reserves 512 MiB (memoryReservation), more than its hard limit of 256 MiB" in problem


def test_what_fits_is_counted_host_by_host_not_from_the_sum():
    # 600 MiB left in all, but no host can take two tasks of 200 MiB plus a third.
    left = {"i-a": 300, "i-b": 300}

    assert fit_problem("web", desired=2, each=200, left=left, hosts_word="hosts") == ""
    problem = fit_problem("web", desired=3, each=200, left=left, hosts_word="hosts")
    assert problem == (
        "web: 3 x 200 MiB do not fit the memory left on its hosts "
        "(i-a 300 MiB, i-b 300 MiB): room for 2"
    )


def test_nothing_to_fit_or_no_hosts_known_is_no_problem():
    assert fit_problem("web", desired=0, each=200, left={"i-a": 10}, hosts_word="hosts") == ""
    assert fit_problem("web", desired=2, each=200, left={}, hosts_word="hosts") == ""


def test_a_tasks_memory_is_the_tasks_own_or_its_containers_reservations():
    containers = [ContainerMemory("app", 512, 256), ContainerMemory("log", 128)]

    assert task_memory(containers, 1024) == 1024
    assert task_memory(containers, None) == 256 + 128
