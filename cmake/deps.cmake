# Third-party libraries, all from Debian 12 (see ../shared/TOOLCHAIN.md §2).
# Each is found once here; a missing one stops configure with the package to
# install.
find_package(PkgConfig REQUIRED)
find_package(Threads REQUIRED)

macro(ash_require found pkg)
  if(NOT ${found})
    message(FATAL_ERROR "missing dependency: apt-get install ${pkg}")
  endif()
endmacro()

pkg_check_modules(LIBEVENT IMPORTED_TARGET
  libevent_core>=2.1 libevent_extra libevent_pthreads libevent_openssl)
ash_require(LIBEVENT_FOUND libevent-dev)
find_package(nng 1.5 CONFIG QUIET)
ash_require(nng_FOUND libnng-dev)
find_package(PostgreSQL QUIET)
ash_require(PostgreSQL_FOUND libpq-dev)
find_package(CURL QUIET)
ash_require(CURL_FOUND libcurl4-openssl-dev)
find_package(OpenSSL 3.0 QUIET)
ash_require(OPENSSL_FOUND libssl-dev)
pkg_check_modules(CJSON IMPORTED_TARGET libcjson)
ash_require(CJSON_FOUND libcjson-dev)
pkg_check_modules(LIBJWT IMPORTED_TARGET libjwt>=1.10)
ash_require(LIBJWT_FOUND libjwt-dev)

# What every target built on libashoon links.
add_library(ash_deps INTERFACE)
target_link_libraries(ash_deps INTERFACE
  PkgConfig::LIBEVENT nng::nng PostgreSQL::PostgreSQL CURL::libcurl
  OpenSSL::SSL OpenSSL::Crypto PkgConfig::CJSON PkgConfig::LIBJWT
  Threads::Threads m)
