# The two set-up commands of the README, plus conveniences.
.PHONY: demo test release format tidy clean

demo:          ## build (release) and run the demo maintenance job
	scripts/run-demo

test:          ## build with ASan/UBSan and run every test
	scripts/test

release:
	scripts/install-deps && cmake --preset release && cmake --build --preset release

format:
	clang-format -i $$(git ls-files 'src/*.cpp' 'src/*.hpp' 'tests/*.cpp' 'tests/*.hpp')

tidy:
	cmake --preset dev >/dev/null && scripts/check-tidy build/dev

clean:
	rm -rf build demo
