# Warning flags and sanitizers shared by every target of the project.

# kd_target_warnings(<target>): the project's warning set (and -Werror when KD_WERROR is on).
function(kd_target_warnings target)
  target_compile_options(${target} PRIVATE
    -Wall -Wextra -Wpedantic -Wshadow -Wcast-qual -Wpointer-arith -Wundef
    $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes -Wmissing-prototypes>
    $<$<BOOL:${KD_WERROR}>:-Werror>)
endfunction()

if(KD_SANITIZE)
  add_compile_options(-fsanitize=${KD_SANITIZE} -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=${KD_SANITIZE})
endif()
