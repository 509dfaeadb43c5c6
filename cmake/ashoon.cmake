# Build conventions shared by every ashoon target (STYLE.md §17-19).

# Warnings as errors on our own targets only (never on third-party code).
add_library(ash_warnings INTERFACE)
target_compile_options(ash_warnings INTERFACE
  -Wall -Wextra -Werror -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes
  -Wshadow -Wpointer-arith -Wundef -Wvla -Wno-unused-parameter)
target_compile_definitions(ash_warnings INTERFACE _GNU_SOURCE
  ASH_VERSION="${PROJECT_VERSION}")

if(ASH_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
    -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()

# ash_embed_sql(<out.c> <symbol> <dir>): turns <dir>/NNNN_name.sql, then
# the routines <dir>/routines/name.sql (version 0), into a NULL-terminated
# ash_db_migration array named <symbol>, so a service binary carries its
# own migrations and needs no files at run time.
function(ash_embed_sql out symbol dir)
  file(GLOB sql CONFIGURE_DEPENDS "${dir}/*.sql")
  file(GLOB routines CONFIGURE_DEPENDS "${dir}/routines/*.sql")
  list(SORT sql)
  list(SORT routines)
  list(APPEND sql ${routines})
  # A ';' list would be split into separate arguments: pass it with '|'.
  string(REPLACE ";" "|" sql_arg "${sql}")
  add_custom_command(OUTPUT "${out}"
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DSYMBOL=${symbol} "-DFILES=${sql_arg}"
      -P ${PROJECT_SOURCE_DIR}/cmake/embed_sql.cmake
    DEPENDS ${sql} ${PROJECT_SOURCE_DIR}/cmake/embed_sql.cmake
    COMMENT "Embedding migrations for ${symbol}"
    VERBATIM)
endfunction()

# ash_service(<name> PREFIX <p> SOURCES ...): the executable ashoon-<name>,
# linked with libashoon, carrying services/<name>/migrations as <p>_migrations.
function(ash_service name)
  cmake_parse_arguments(S "" "PREFIX" "SOURCES" ${ARGN})
  set(gen "${CMAKE_CURRENT_BINARY_DIR}/${name}_migrations.c")
  ash_embed_sql("${gen}" "${S_PREFIX}_migrations"
    "${CMAKE_CURRENT_SOURCE_DIR}/migrations")
  add_executable(ashoon-${name} ${S_SOURCES} "${gen}")
  target_include_directories(ashoon-${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(ashoon-${name} PRIVATE ashoon ash_deps ash_warnings)
endfunction()
