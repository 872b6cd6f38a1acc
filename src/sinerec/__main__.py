from sinerec import runtime

runtime.prefer_passive_wait()  # before torch is imported (sinerec.runtime)

from sinerec.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
