# The Debian package (CPack DEB) and what it installs beyond the binary: the man page and bash
# completion generated from --help at build time, the systemd units, logrotate, sysusers.d,
# tmpfiles.d, the packaged configuration and the docs. Build it from the release preset:
#   cmake --preset release && cmake --build --preset release --target package
# (`make package` with a Makefile generator). docs/PACKAGING.md describes the result.
#
# The units and the configuration name /usr/bin/mlkeeper and /etc/mlkeeper/mlkeeper.toml, so the
# package installs under /usr with absolute /etc and /lib/systemd paths, as Debian 12 packages do.

find_program(MLK_PYTHON3 python3)
set(MLK_PKG_DIR ${CMAKE_BINARY_DIR}/packaging)

# Man page and completion: scripts/gen-cli-docs runs the freshly built `mlkeeper ... --help`.
if(MLK_PYTHON3)
  add_custom_command(
    OUTPUT ${MLK_PKG_DIR}/mlkeeper.1 ${MLK_PKG_DIR}/mlkeeper.1.gz ${MLK_PKG_DIR}/mlkeeper.bash
    COMMAND ${CMAKE_COMMAND} -E make_directory ${MLK_PKG_DIR}
    COMMAND ${MLK_PYTHON3} ${CMAKE_SOURCE_DIR}/scripts/gen-cli-docs $<TARGET_FILE:mlkeeper>
            --man ${MLK_PKG_DIR}/mlkeeper.1 --bash-completion ${MLK_PKG_DIR}/mlkeeper.bash
    # Debian installs man pages compressed; -n leaves the time stamp out (reproducible).
    COMMAND gzip -9nf -k ${MLK_PKG_DIR}/mlkeeper.1
    DEPENDS mlkeeper ${CMAKE_SOURCE_DIR}/scripts/gen-cli-docs
    COMMENT "Generating the man page and bash completion from mlkeeper --help"
    VERBATIM)
  add_custom_target(mlkeeper_cli_docs ALL
    DEPENDS ${MLK_PKG_DIR}/mlkeeper.1 ${MLK_PKG_DIR}/mlkeeper.1.gz ${MLK_PKG_DIR}/mlkeeper.bash)
  if(TARGET mlkeeper_tests)
    add_dependencies(mlkeeper_tests mlkeeper_cli_docs)  # packaging_test reads them
  endif()
  install(FILES ${MLK_PKG_DIR}/mlkeeper.1.gz DESTINATION share/man/man1)
  install(FILES ${MLK_PKG_DIR}/mlkeeper.bash DESTINATION share/bash-completion/completions
    RENAME mlkeeper)
else()
  message(WARNING "python3 not found: no man page or bash completion (scripts/install-deps)")
endif()

# Units: the agent's, and the exported timer set (committed; scripts/gen-packaging).
file(GLOB MLK_UNITS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/packaging/systemd/*.service
  ${CMAKE_SOURCE_DIR}/packaging/systemd/*.timer)
install(FILES ${MLK_UNITS} DESTINATION /lib/systemd/system)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/sysusers.d/mlkeeper.conf DESTINATION lib/sysusers.d)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/tmpfiles.d/mlkeeper.conf DESTINATION lib/tmpfiles.d)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/logrotate/mlkeeper DESTINATION /etc/logrotate.d)
install(FILES ${CMAKE_SOURCE_DIR}/packaging/mlkeeper.toml DESTINATION /etc/mlkeeper)
# The crontab is an example: installed in /etc/cron.d it would schedule the jobs unasked.
install(FILES ${CMAKE_SOURCE_DIR}/packaging/cron/mlkeeper
  DESTINATION share/doc/mlkeeper/examples/cron.d)
install(FILES ${CMAKE_SOURCE_DIR}/examples/mlkeeper.toml ${CMAKE_SOURCE_DIR}/examples/demo.toml
  DESTINATION share/doc/mlkeeper/examples)
file(GLOB MLK_DOCS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/*.md)
install(FILES ${CMAKE_SOURCE_DIR}/README.md ${MLK_DOCS} DESTINATION share/doc/mlkeeper)
install(DIRECTORY ${CMAKE_SOURCE_DIR}/docs/formats DESTINATION share/doc/mlkeeper)
# Prometheus scrape config and alert rules (with their promtool tests), and the Grafana dashboard.
install(DIRECTORY ${CMAKE_SOURCE_DIR}/packaging/prometheus ${CMAKE_SOURCE_DIR}/packaging/grafana
  DESTINATION share/doc/mlkeeper/examples)

set(MLK_PACKAGE_MAINTAINER "mlkeeper maintainers <mlkeeper@localhost>"
  CACHE STRING "Maintainer field of the .deb")
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME mlkeeper)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT ${MLK_PACKAGE_MAINTAINER})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "keeps GPU/ML servers healthy: backups, GPU monitoring, cleanup, health checks")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# The extended description; CPack puts the summary above it and indents it.
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
  "mlkeeper is one program for the routine care of machine learning servers:
verified model backups (local and S3), NVIDIA GPU monitoring with alerts,
safe cleanup of old experiments and checkpoints, health checks, and a
scheduler (its own agent, systemd timers or cron).

The package creates the mlkeeper account and directories but starts and
enables nothing; see /usr/share/doc/mlkeeper/PACKAGING.md.")
# Linked libraries (libarchive, libsqlite3, libssl, libsystemd, ...) come from dpkg-shlibdeps.
# libcurl (alerts by webhook and SMTP, S3) and libpq (the PostgreSQL probe) are dlopen()ed on
# first use, which dpkg-shlibdeps cannot see: without them only those features fail.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "libcurl4, libpq5, logrotate")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "cron")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${CMAKE_SOURCE_DIR}/packaging/deb/postinst ${CMAKE_SOURCE_DIR}/packaging/deb/prerm
  ${CMAKE_SOURCE_DIR}/packaging/deb/postrm ${CMAKE_SOURCE_DIR}/packaging/deb/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# `package_source` would otherwise pack build trees and the demo workspace too.
set(CPACK_SOURCE_GENERATOR TGZ)
set(CPACK_SOURCE_IGNORE_FILES "/build/" "/demo/" "/\\\\.git/" "/\\\\.cache/")
include(CPack)

# The .deb's install/remove cycle installs the package on this machine: its own ctest test, run
# alone (RUN_SERIAL: other tests would read the installed /etc/mlkeeper/mlkeeper.toml), as root.
# `ctest -LE package` leaves it out.
if(TARGET mlkeeper_tests)
  add_test(NAME packaging_deb COMMAND mlkeeper_tests --gtest_filter=DebCycle.*)
  set_tests_properties(packaging_deb PROPERTIES ENVIRONMENT MLK_TEST_DEB=1 RUN_SERIAL TRUE
    LABELS package TIMEOUT 600 SKIP_REGULAR_EXPRESSION "\\[  SKIPPED \\]")
endif()
