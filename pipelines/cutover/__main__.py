from cutover.entry import run

run()
