{#-
    The quoting macros: every dbt var that reaches SQL goes through one of
    them (issue 16). A var is data, never code: a string becomes one quoted
    literal, a number is checked to be a number, a list is checked to be a
    list; anything else stops the compilation with an error naming the var.
-#}

{% macro mdq_quote_text(value, var_name) %}
    {#-
        A string var as one SQL string literal: single quotes doubled
        (standard_conforming_strings is on since PostgreSQL 9.1, so a
        backslash is an ordinary character).

        Args:
            value: the var's value (a string; a number is rendered as text).
            var_name: the var, for the error message.

        Returns:
            '...' with every ' doubled.

        Raises:
            compiler error: the value is not a string or number (a list, a
                mapping, null), or holds a NUL byte (PostgreSQL text cannot).
    -#}
    {%- if value is none or value is mapping
        or (value is iterable and value is not string) -%}
        {{ exceptions.raise_compiler_error(
            "mdq: var '" ~ var_name ~ "' must be a string here, got "
            ~ (value | string)[:80]) }}
    {%- endif -%}
    {%- set text = value | string -%}
    {%- if '\x00' in text -%}
        {{ exceptions.raise_compiler_error(
            "mdq: var '" ~ var_name ~ "' holds a NUL byte") }}
    {%- endif -%}
    '{{ text.replace("'", "''") }}'
{%- endmacro %}


{% macro mdq_quote_number(value, var_name) %}
    {#-
        A number var as a SQL numeric literal.

        Args:
            value: an int or float, or a string of one (e.g. '1.5', '-2e3').
            var_name: the var, for the error message.

        Returns:
            the number, written as a plain decimal or exponent literal.

        Raises:
            compiler error: anything that is not a finite number (a boolean,
                'nan', 'inf', text, a list).
    -#}
    {%- set text = value | string -%}
    {%- if value is boolean
        or not modules.re.match('^[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?$',
                                text) -%}
        {{ exceptions.raise_compiler_error(
            "mdq: var '" ~ var_name ~ "' must be a number, got " ~ text[:80]) }}
    {%- endif -%}
    {{ text }}
{%- endmacro %}


{% macro mdq_quote_list(value, var_name) %}
    {#-
        Check that a var is a non-empty list (not a string or a mapping) and
        return it, for a loop that quotes each item.

        Raises:
            compiler error: the var is not a list, or is empty.
    -#}
    {%- if value is string or value is mapping or value is not iterable
        or (value | length) == 0 -%}
        {{ exceptions.raise_compiler_error(
            "mdq: var '" ~ var_name ~ "' must be a non-empty list, got "
            ~ (value | string)[:80]) }}
    {%- endif -%}
    {{ return(value) }}
{%- endmacro %}


{% macro mdq_quote_choice(value, choices, var_name) %}
    {#-
        A var that must be one of a fixed set of words, as a SQL literal.

        Args:
            value: the var's value.
            choices: the accepted words.
            var_name: the var, for the error message.

        Raises:
            compiler error: the value is not one of `choices`.
    -#}
    {%- if (value | string) not in choices -%}
        {{ exceptions.raise_compiler_error(
            "mdq: var '" ~ var_name ~ "' has '" ~ (value | string)[:80]
            ~ "'; expected one of " ~ (choices | join(', '))) }}
    {%- endif -%}
    {{ mdq_quote_text(value, var_name) }}
{%- endmacro %}
